// SPDX-License-Identifier: GPL-2.0
#include "fuse/request.h"

#include <algorithm>
#include <cerrno>
#include <climits>

namespace holdfast::fuse {

bool Reader::name(std::string_view &out)
{
    if (!cstring(out, NAME_MAX))
        return false;
    return !out.empty() && out.find('/') == std::string_view::npos;
}

bool Reader::cstring(std::string_view &out, size_t max)
{
    size_t avail = remaining();
    size_t scan = max < avail ? max + 1 : avail;
    if (scan == 0)
        return false;
    const void *nul = std::memchr(p_, 0, scan);
    if (!nul)
        return false;
    size_t len = static_cast<const std::byte *>(nul) - p_;
    out = {reinterpret_cast<const char *>(p_), len};
    p_ += len + 1;
    return true;
}

ParseError parse_request(std::span<const std::byte> in, Request &out)
{
    return parse_request(in, in.size(), out);
}

ParseError parse_request(std::span<const std::byte> head, uint64_t total, Request &out)
{
    if (head.size() < sizeof(fuse_in_header))
        return ParseError::short_header;
    std::memcpy(&out.hdr, head.data(), sizeof(fuse_in_header));
    if (out.hdr.len != total || total < head.size())
        return ParseError::length_mismatch;
    const size_t body = size_t(total) - sizeof(fuse_in_header);
    const size_t ext = static_cast<size_t>(out.hdr.total_extlen) * 8;
    if (ext > body)
        return ParseError::bad_extlen;
    const size_t in_head = head.size() - sizeof(fuse_in_header);
    out.args = Reader(head.subspan(sizeof(fuse_in_header), std::min(in_head, body - ext)));
    if (body <= in_head)
        out.extensions = head.subspan(sizeof(fuse_in_header) + body - ext, ext);
    else
        out.extensions = {};
    return ParseError::ok;
}

int find_supp_group(std::span<const std::byte> ext, uint32_t &gid)
{
    size_t off = 0;
    while (off < ext.size()) {
        fuse_ext_header h;
        if (ext.size() - off < sizeof(h))
            return -EINVAL;
        std::memcpy(&h, ext.data() + off, sizeof(h));
        // A size that does not advance, is not 8-aligned, or overruns the
        // area would loop or read past it.
        if (h.size < sizeof(h) || h.size % 8 != 0 || h.size > ext.size() - off)
            return -EINVAL;
        if (h.type == kExtGroups) {
            fuse_supp_groups sg;
            size_t body = h.size - sizeof(h);
            if (body < sizeof(sg))
                return -EINVAL;
            std::memcpy(&sg, ext.data() + off + sizeof(h), sizeof(sg));
            // Compare in 64 bits: nr_groups * 4 must not wrap.
            if (uint64_t(sg.nr_groups) * sizeof(uint32_t) > body - sizeof(sg))
                return -EINVAL;
            if (sg.nr_groups == 0)
                return 0;
            std::memcpy(&gid, ext.data() + off + sizeof(h) + sizeof(sg), sizeof(gid));
            return 1;
        }
        off += h.size;
    }
    return 0;
}

const char *parse_error_str(ParseError e)
{
    switch (e) {
    case ParseError::ok:
        return "ok";
    case ParseError::short_header:
        return "request shorter than fuse_in_header";
    case ParseError::length_mismatch:
        return "header length does not match bytes received";
    case ParseError::bad_extlen:
        return "extension length exceeds request";
    }
    return "?";
}

} // namespace holdfast::fuse
