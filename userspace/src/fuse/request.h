// SPDX-License-Identifier: GPL-2.0
// Bounds-checked views of FUSE requests and the buffer a reply is built in.
// Everything here treats its input as hostile: a guest or a crash may hand us
// any bytes, so every length, count and name is checked before it is used.
#pragma once

#include "fuse/abi.h"

#include <cstddef>
#include <cstring>
#include <span>
#include <string_view>

namespace holdfast::fuse {

// Reads typed arguments off the front of a byte range.  Structs are copied
// out, so the caller never holds a misaligned pointer into the buffer.
class Reader {
  public:
    Reader() = default;
    explicit Reader(std::span<const std::byte> b) : p_(b.data()), end_(b.data() + b.size()) {}

    template <class T> bool read(T &out)
    {
        if (remaining() < sizeof(T))
            return false;
        std::memcpy(&out, p_, sizeof(T));
        p_ += sizeof(T);
        return true;
    }

    // A path component: NUL-terminated inside the buffer, 1..255 bytes, no '/'.
    // Returns false for anything else; "." and ".." are returned and left to
    // the caller, which knows whether they are meaningful for its op.
    bool name(std::string_view &out);

    // A NUL-terminated string of up to max bytes (symlink targets, xattr names).
    bool cstring(std::string_view &out, size_t max);

    bool bytes(size_t n, std::span<const std::byte> &out)
    {
        if (remaining() < n)
            return false;
        out = {p_, n};
        p_ += n;
        return true;
    }

    std::span<const std::byte> rest() const { return {p_, remaining()}; }
    size_t remaining() const { return static_cast<size_t>(end_ - p_); }

  private:
    const std::byte *p_ = nullptr;
    const std::byte *end_ = nullptr;
};

// A parsed request: the header and a reader over its arguments (request
// extensions, if any, are split off and not part of the arguments).
struct Request {
    fuse_in_header hdr{};
    Reader args;
    std::span<const std::byte> extensions;
    // Delivered again by the transport itself (Engine::handle()).
    bool resubmitted = false;
};

enum class ParseError { ok, short_header, length_mismatch, bad_extlen };

// Validates the header against the number of bytes actually received.
ParseError parse_request(std::span<const std::byte> in, Request &out);
// The same for a request of `total` bytes of which only the first ones are
// in `head` (a WRITE whose data the transport left where it came,
// Engine::handle_detached()): `args` covers what `head` holds of the
// arguments, `extensions` is empty unless all of them are in `head`.
ParseError parse_request(std::span<const std::byte> head, uint64_t total, Request &out);
const char *parse_error_str(ParseError e);

// Walks a request's extensions (fuse_ext_header{size, type} records, each
// size a multiple of 8 that includes its header) looking for FUSE_EXT_GROUPS.
// Returns 1 and the first group in `gid` if there is one, 0 if there is
// none (no extensions, other types only, or an empty group list), or
// -EINVAL if a record or the group count runs past the extension area.
int find_supp_group(std::span<const std::byte> ext, uint32_t &gid);

// Where a reply is assembled.  The fixed-size out struct goes in `arg`; bulk
// data (READ, READDIR, READLINK, xattr values) goes in `payload`, a buffer the
// transport provides so data can land where the transport wants it.
class Reply {
  public:
    static constexpr size_t kArgMax = 512;

    explicit Reply(std::span<std::byte> payload_area) : area_(payload_area) {}

    void reset(uint64_t unique)
    {
        unique_ = unique;
        error_ = 0;
        arg_len_ = 0;
        payload_len_ = 0;
        payload_cap_ = area_.size();
        send_ = true;
    }

    template <class T> T &arg()
    {
        static_assert(sizeof(T) <= kArgMax);
        arg_len_ = sizeof(T);
        std::memset(arg_buf_, 0, sizeof(T));
        return *reinterpret_cast<T *>(arg_buf_);
    }
    // Two structs back to back (CREATE: entry_out then open_out).
    template <class A, class B> std::pair<A *, B *> args2()
    {
        static_assert(sizeof(A) + sizeof(B) <= kArgMax);
        arg_len_ = sizeof(A) + sizeof(B);
        std::memset(arg_buf_, 0, arg_len_);
        return {reinterpret_cast<A *>(arg_buf_), reinterpret_cast<B *>(arg_buf_ + sizeof(A))};
    }

    // Payload: the fs writes into payload_space() and then commits a length.
    std::span<std::byte> payload_space() { return area_.first(payload_cap_); }
    void limit_payload(size_t cap)
    {
        payload_cap_ = cap < area_.size() ? cap : area_.size();
        if (payload_len_ > payload_cap_)
            payload_len_ = payload_cap_;
    }
    void set_payload_len(size_t n) { payload_len_ = n <= payload_cap_ ? n : payload_cap_; }
    bool append_payload(const void *p, size_t n)
    {
        if (payload_cap_ - payload_len_ < n)
            return false;
        std::memcpy(area_.data() + payload_len_, p, n);
        payload_len_ += n;
        return true;
    }

    void set_error(int negative_errno)
    {
        error_ = negative_errno;
        arg_len_ = 0;
        payload_len_ = 0;
    }
    void suppress() { send_ = false; } // FORGET, INTERRUPT: no reply on the wire

    bool should_send() const { return send_; }
    int error() const { return error_; }
    uint64_t unique() const { return unique_; }
    std::span<const std::byte> arg_bytes() const { return {arg_buf_, error_ ? 0 : arg_len_}; }
    std::span<const std::byte> payload() const
    {
        return {area_.data(), error_ ? 0 : payload_len_};
    }
    size_t total_len() const
    {
        return sizeof(fuse_out_header) + arg_bytes().size() + payload().size();
    }
    fuse_out_header header() const
    {
        return {static_cast<uint32_t>(total_len()), error_, unique_};
    }

  private:
    std::span<std::byte> area_;
    size_t payload_cap_ = 0;
    size_t payload_len_ = 0;
    alignas(8) std::byte arg_buf_[kArgMax];
    size_t arg_len_ = 0;
    uint64_t unique_ = 0;
    int error_ = 0;
    bool send_ = true;
};

} // namespace holdfast::fuse
