// SPDX-License-Identifier: GPL-2.0
// FUSE-over-io_uring entry buffers: a request the kernel split into
// in_out / op_in / payload must come back as the exact bytes /dev/fuse
// would have delivered, and a reply must land where the kernel reads it.
#include "transport/uring/entry.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

using holdfast::fuse::Reply;
using holdfast::uring::Entry;

namespace {

constexpr size_t kCap = 1u << 20;

// A request as /dev/fuse delivers it: header, first argument, the rest.
std::vector<std::byte> make_request(uint32_t opcode, uint64_t unique, size_t first, size_t rest,
                                    unsigned seed) {
    std::vector<std::byte> v(sizeof(fuse_in_header) + first + rest);
    fuse_in_header h{};
    h.len = uint32_t(v.size());
    h.opcode = opcode;
    h.unique = unique;
    h.nodeid = 7;
    h.uid = 1000;
    std::memcpy(v.data(), &h, sizeof(h));
    for (size_t i = sizeof(h); i < v.size(); i++)
        v[i] = std::byte((i * 131 + seed) & 0xff);
    return v;
}

// What fuse_uring_copy_to_ring() does with it.
void kernel_split(Entry &e, const std::vector<std::byte> &req, size_t first, uint64_t commit) {
    auto *h = e.header();
    std::memset(h, 0xee, sizeof(*h)); // stale bytes from an earlier request
    std::memcpy(h->in_out, req.data(), sizeof(fuse_in_header));
    std::memcpy(h->op_in, req.data() + sizeof(fuse_in_header), first);
    size_t rest = req.size() - sizeof(fuse_in_header) - first;
    std::memcpy(e.payload(), req.data() + sizeof(fuse_in_header) + first, rest);
    h->ring_ent_in_out.flags = 0;
    h->ring_ent_in_out.commit_id = commit;
    h->ring_ent_in_out.payload_sz = uint32_t(rest);
}

void expect_same(std::span<const std::byte> got, const std::vector<std::byte> &want) {
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size()));
}

TEST(UringEntry, PayloadSizeCoversKernelMinimumAndReplies) {
    // max(8192, max_write, max_pages * 4096, reply payload) + out struct room.
    EXPECT_GE(Entry::payload_size(4096, 1, 4096), 8192u + Reply::kArgMax);
    EXPECT_GE(Entry::payload_size(1u << 20, 256, 1u << 20), (1u << 20) + Reply::kArgMax);
    EXPECT_GE(Entry::payload_size(4096, 512, 4096), 512u * 4096);
    EXPECT_EQ(Entry::payload_size(1u << 20, 256, 1u << 20) % 4096, 0u);
}

TEST(UringEntry, RegisterIovecsDescribeTheBuffers) {
    Entry e(kCap);
    EXPECT_EQ(e.iov()[0].iov_base, e.header());
    EXPECT_EQ(e.iov()[0].iov_len, sizeof(holdfast::fuse::fuse_uring_req_header));
    EXPECT_EQ(e.iov()[1].iov_base, e.payload());
    EXPECT_EQ(e.iov()[1].iov_len, kCap);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(e.payload()) % 4096, 0u);
}

TEST(UringEntry, HeaderOnlyRequest) {
    Entry e(kCap);
    auto req = make_request(FUSE_STATFS, 0x10, 0, 0, 1);
    kernel_split(e, req, 0, 0x10);
    const char *why = nullptr;
    expect_same(e.request(&why), req);
    EXPECT_EQ(e.unique(), 0x10u);
    EXPECT_EQ(e.commit_id(), 0x10u);
}

TEST(UringEntry, OpInOnly) {
    Entry e(kCap);
    auto req = make_request(FUSE_GETATTR, 0x12, sizeof(fuse_getattr_in), 0, 2);
    kernel_split(e, req, sizeof(fuse_getattr_in), 0x12);
    const char *why = nullptr;
    expect_same(e.request(&why), req);
}

TEST(UringEntry, EmptyFirstArgumentNameInPayload) {
    // LOOKUP: in_args[0] is empty, the name is in the payload.
    Entry e(kCap);
    auto req = make_request(FUSE_LOOKUP, 0x14, 0, 12, 3);
    kernel_split(e, req, 0, 0x14);
    const char *why = nullptr;
    auto got = e.request(&why);
    expect_same(got, req);
    // Small: rebuilt away from the payload, which stays free for a reply.
    EXPECT_TRUE(got.data() + got.size() <= e.payload() || got.data() >= e.payload() + kCap);
}

TEST(UringEntry, LargeWriteIsNotCopied) {
    Entry e(kCap);
    const size_t data = 1u << 20;
    auto req = make_request(FUSE_WRITE, 0x16, sizeof(fuse_write_in), data, 4);
    kernel_split(e, req, sizeof(fuse_write_in), 0x16);
    const char *why = nullptr;
    auto got = e.request(&why);
    expect_same(got, req);
    // The data is where the kernel put it; header and op_in right before it.
    EXPECT_EQ(got.data() + sizeof(fuse_in_header) + sizeof(fuse_write_in), e.payload());
}

TEST(UringEntry, SizesAroundTheRebuildLimit) {
    for (size_t total : {Entry::kRebuildArea - 1, Entry::kRebuildArea, Entry::kRebuildArea + 1}) {
        Entry e(kCap);
        size_t first = 40;
        auto req = make_request(FUSE_WRITE, 0x18, first, total - sizeof(fuse_in_header) - first, 5);
        kernel_split(e, req, first, 0x18);
        const char *why = nullptr;
        expect_same(e.request(&why), req);
    }
}

TEST(UringEntry, MalformedBuffersAreRefused) {
    Entry e(kCap);
    auto req = make_request(FUSE_WRITE, 0x20, 40, 100, 6);
    const char *why = nullptr;

    kernel_split(e, req, 40, 0x20);
    e.header()->ring_ent_in_out.payload_sz = kCap + 1;
    EXPECT_TRUE(e.request(&why).empty());
    EXPECT_NE(why, nullptr);

    // Header length shorter than the payload alone.
    kernel_split(e, req, 40, 0x20);
    e.header()->ring_ent_in_out.payload_sz = uint32_t(req.size());
    why = nullptr;
    EXPECT_TRUE(e.request(&why).empty());
    EXPECT_NE(why, nullptr);

    // A first argument bigger than op_in (128 bytes).
    kernel_split(e, req, 40, 0x20);
    e.header()->ring_ent_in_out.payload_sz = 0;
    why = nullptr;
    EXPECT_TRUE(e.request(&why).empty());
    EXPECT_NE(why, nullptr);
}

fuse_out_header out_header(Entry &e) {
    fuse_out_header oh;
    std::memcpy(&oh, e.header()->in_out, sizeof(oh));
    return oh;
}

TEST(UringEntry, ReplyWithStructOnly) {
    Entry e(kCap);
    Reply &r = e.reply();
    r.reset(0x30);
    auto &a = r.arg<fuse_attr_out>();
    a.attr.ino = 42;
    e.put_reply();
    auto oh = out_header(e);
    EXPECT_EQ(oh.unique, 0x30u);
    EXPECT_EQ(oh.error, 0);
    EXPECT_EQ(oh.len, sizeof(fuse_out_header) + sizeof(fuse_attr_out));
    EXPECT_EQ(e.header()->ring_ent_in_out.payload_sz, sizeof(fuse_attr_out));
    fuse_attr_out back;
    std::memcpy(&back, e.payload(), sizeof(back));
    EXPECT_EQ(back.attr.ino, 42u);
}

TEST(UringEntry, ReplyWithDataIsInPlace) {
    Entry e(kCap);
    Reply &r = e.reply();
    r.reset(0x32);
    auto space = r.payload_space();
    ASSERT_EQ(static_cast<void *>(space.data()), static_cast<void *>(e.payload()));
    std::memset(space.data(), 0x5a, 65536);
    r.set_payload_len(65536);
    e.put_reply();
    EXPECT_EQ(e.header()->ring_ent_in_out.payload_sz, 65536u);
    EXPECT_EQ(out_header(e).len, sizeof(fuse_out_header) + 65536);
    EXPECT_EQ(e.payload()[65535], std::byte(0x5a));
}

TEST(UringEntry, ReplyWithStructAndDataKeepsTheirOrder) {
    Entry e(kCap);
    Reply &r = e.reply();
    r.reset(0x34);
    r.arg<fuse_getxattr_out>().size = 7;
    const char data[] = "payload";
    ASSERT_TRUE(r.append_payload(data, 7));
    e.put_reply();
    EXPECT_EQ(e.header()->ring_ent_in_out.payload_sz, sizeof(fuse_getxattr_out) + 7);
    fuse_getxattr_out g;
    std::memcpy(&g, e.payload(), sizeof(g));
    EXPECT_EQ(g.size, 7u);
    EXPECT_EQ(0, std::memcmp(e.payload() + sizeof(g), data, 7));
}

TEST(UringEntry, ErrorReplyCarriesNoPayload) {
    Entry e(kCap);
    Reply &r = e.reply();
    r.reset(0x36);
    r.arg<fuse_attr_out>();
    r.set_error(-ENOENT);
    e.put_reply();
    auto oh = out_header(e);
    EXPECT_EQ(oh.error, -ENOENT);
    EXPECT_EQ(oh.unique, 0x36u);
    EXPECT_EQ(e.header()->ring_ent_in_out.payload_sz, 0u);

    e.put_error(0x38, -EIO);
    oh = out_header(e);
    EXPECT_EQ(oh.error, -EIO);
    EXPECT_EQ(oh.unique, 0x38u);
    EXPECT_EQ(oh.len, sizeof(fuse_out_header));
    EXPECT_EQ(e.header()->ring_ent_in_out.payload_sz, 0u);
}

} // namespace

// Crash recovery: a reply that overwrites the start of a large request's
// data first saves those bytes (and says how many in the entry's record),
// so a successor can serve the request again with the data the kernel sent.
TEST(UringEntry, ReplyToLargeRequestSavesTheBytesItOverwrites) {
    Entry e(kCap);
    holdfast::state::UringEntryRecord rec{};
    e.set_record(&rec);
    auto req = make_request(FUSE_WRITE, 0x1234, sizeof(fuse_write_in), 64 * 1024, 5);
    kernel_split(e, req, sizeof(fuse_write_in), 0x1234);
    const char *why = nullptr;
    auto got = e.request(&why);
    ASSERT_FALSE(got.empty()) << why;
    std::vector<std::byte> copy(got.begin(), got.end());
    // The successor marks its copy resent; the reply must not carry the bit.
    Reply &r = e.reply();
    r.reset(0x1234 | holdfast::fuse::kUniqueResend);
    r.arg<fuse_write_out>().size = 64 * 1024;
    e.put_reply();
    EXPECT_EQ(rec.saved, sizeof(fuse_write_out));
    fuse_out_header oh;
    std::memcpy(&oh, e.header()->in_out, sizeof(oh));
    EXPECT_EQ(oh.unique, 0x1234u);
    EXPECT_NE(0, std::memcmp(got.data(), copy.data(), copy.size())) << "nothing overwritten?";
    e.restore_saved(rec.saved);
    expect_same(got, copy);
}

// A small request is copied whole: its reply overwrites nothing of it.
TEST(UringEntry, ReplyToSmallRequestSavesNothing) {
    Entry e(kCap);
    holdfast::state::UringEntryRecord rec{};
    e.set_record(&rec);
    auto req = make_request(FUSE_GETATTR, 9, sizeof(fuse_getattr_in), 0, 1);
    kernel_split(e, req, sizeof(fuse_getattr_in), 9);
    const char *why = nullptr;
    auto got = e.request(&why);
    ASSERT_FALSE(got.empty()) << why;
    Reply &r = e.reply();
    r.reset(9);
    r.arg<fuse_attr_out>();
    e.put_reply();
    EXPECT_EQ(rec.saved, 0u);
    expect_same(got, req);
}
