// SPDX-License-Identifier: GPL-2.0
// Reader, parse_request and Reply: the bounds checks every request and reply
// goes through.  Input here is built to sit exactly on each boundary, because
// that is where an off-by-one turns hostile bytes into an out-of-bounds read.
#include "fuse/request.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

using namespace holdfast::fuse;

namespace {

std::vector<std::byte> bytes_of(std::string_view s) {
    std::vector<std::byte> v(s.size());
    if (!s.empty()) // memcpy's pointers must be valid even for 0 bytes
        std::memcpy(v.data(), s.data(), s.size());
    return v;
}

// A name plus its NUL, as the kernel sends it.
std::vector<std::byte> cstr(std::string_view s) {
    auto v = bytes_of(s);
    v.push_back(std::byte{0});
    return v;
}

struct Pod {
    uint32_t a;
    uint64_t b;
};

// ---------------------------------------------------------------------------
// Reader

TEST(Reader, ReadExactBufferSucceedsAndConsumesAll) {
    Pod in{7, 0x1122334455667788ULL};
    std::vector<std::byte> buf(sizeof(in));
    std::memcpy(buf.data(), &in, sizeof(in));
    Reader r(buf);
    Pod out{};
    ASSERT_TRUE(r.read(out));
    EXPECT_EQ(out.a, 7u);
    EXPECT_EQ(out.b, 0x1122334455667788ULL);
    EXPECT_EQ(r.remaining(), 0u);
}

TEST(Reader, ReadShortBufferFailsWithoutConsuming) {
    std::vector<std::byte> buf(sizeof(Pod) - 1, std::byte{0xaa});
    Reader r(buf);
    Pod out{1, 2};
    EXPECT_FALSE(r.read(out));
    // A failed read must leave both the output and the cursor alone.
    EXPECT_EQ(out.a, 1u);
    EXPECT_EQ(out.b, 2u);
    EXPECT_EQ(r.remaining(), buf.size());
}

TEST(Reader, ReadsAreSequentialAndUnaligned) {
    // One leading byte puts the uint64_t at an odd offset: the Reader copies,
    // so this must work (and be clean under UBSan's alignment check).
    std::vector<std::byte> buf(1 + sizeof(uint64_t));
    buf[0] = std::byte{0x5a};
    uint64_t v = 0x0102030405060708ULL;
    std::memcpy(buf.data() + 1, &v, sizeof(v));
    Reader r(buf);
    uint8_t first = 0;
    uint64_t second = 0;
    ASSERT_TRUE(r.read(first));
    ASSERT_TRUE(r.read(second));
    EXPECT_EQ(first, 0x5a);
    EXPECT_EQ(second, v);
    EXPECT_FALSE(r.read(first));
}

TEST(Reader, EmptyAndDefaultReadersRefuseEverything) {
    Reader def;
    uint32_t u;
    std::string_view s;
    std::span<const std::byte> sp;
    EXPECT_EQ(def.remaining(), 0u);
    EXPECT_FALSE(def.read(u));
    EXPECT_FALSE(def.name(s));
    EXPECT_FALSE(def.cstring(s, 10));
    EXPECT_TRUE(def.bytes(0, sp));
    EXPECT_FALSE(def.bytes(1, sp));

    std::vector<std::byte> one(1);
    Reader empty(std::span<const std::byte>(one).first(0));
    EXPECT_FALSE(empty.read(u));
    EXPECT_FALSE(empty.name(s));
}

TEST(Reader, BytesTakesExactlyN) {
    auto buf = bytes_of("abcdef");
    Reader r(buf);
    std::span<const std::byte> out;
    ASSERT_TRUE(r.bytes(4, out));
    EXPECT_EQ(out.size(), 4u);
    EXPECT_EQ(out.data(), buf.data());
    EXPECT_EQ(r.remaining(), 2u);
    EXPECT_FALSE(r.bytes(3, out));
    EXPECT_EQ(r.remaining(), 2u);
    EXPECT_EQ(r.rest().data(), buf.data() + 4);
}

TEST(Reader, NameAcceptsOrdinaryNameAndAdvancesPastNul) {
    auto buf = cstr("hello");
    buf.push_back(std::byte{'X'});
    Reader r(buf);
    std::string_view n;
    ASSERT_TRUE(r.name(n));
    EXPECT_EQ(n, "hello");
    EXPECT_EQ(r.remaining(), 1u);
}

TEST(Reader, NameRejectsEmpty) {
    auto buf = cstr("");
    Reader r(buf);
    std::string_view n;
    EXPECT_FALSE(r.name(n));
}

TEST(Reader, NameRejectsMissingNul) {
    auto buf = bytes_of("hello");
    Reader r(buf);
    std::string_view n;
    EXPECT_FALSE(r.name(n));
}

TEST(Reader, NameRejectsSlash) {
    for (const char *bad : {"a/b", "/", "abc/", "/abc"}) {
        auto buf = cstr(bad);
        Reader r(buf);
        std::string_view n;
        EXPECT_FALSE(r.name(n)) << bad;
    }
}

TEST(Reader, NameReturnsDotAndDotDotToTheCaller) {
    for (const char *dot : {".", ".."}) {
        auto buf = cstr(dot);
        Reader r(buf);
        std::string_view n;
        ASSERT_TRUE(r.name(n)) << dot;
        EXPECT_EQ(n, dot);
    }
}

TEST(Reader, NameAccepts255Bytes) {
    std::string s(255, 'n');
    auto buf = cstr(s);
    Reader r(buf);
    std::string_view n;
    ASSERT_TRUE(r.name(n));
    EXPECT_EQ(n.size(), 255u);
    EXPECT_EQ(r.remaining(), 0u);
}

TEST(Reader, NameRejects256Bytes) {
    std::string s(256, 'n');
    auto buf = cstr(s);
    Reader r(buf);
    std::string_view n;
    EXPECT_FALSE(r.name(n));
}

TEST(Reader, NameStopsAtFirstNul) {
    // An embedded NUL ends the name; the rest belongs to the next argument.
    std::vector<std::byte> buf = cstr("a");
    auto tail = cstr("b");
    buf.insert(buf.end(), tail.begin(), tail.end());
    Reader r(buf);
    std::string_view a, b;
    ASSERT_TRUE(r.name(a));
    ASSERT_TRUE(r.name(b));
    EXPECT_EQ(a, "a");
    EXPECT_EQ(b, "b");
    EXPECT_FALSE(r.name(a));
}

TEST(Reader, CstringRespectsMax) {
    auto buf = cstr("abcd");
    std::string_view s;
    {
        Reader r(buf);
        ASSERT_TRUE(r.cstring(s, 4)); // exactly max bytes
        EXPECT_EQ(s, "abcd");
        EXPECT_EQ(r.remaining(), 0u);
    }
    {
        Reader r(buf);
        EXPECT_FALSE(r.cstring(s, 3)); // one over
        EXPECT_EQ(r.remaining(), buf.size());
    }
}

TEST(Reader, CstringAllowsEmptyAndSlash) {
    // cstring is the primitive for symlink targets and xattr names: it only
    // bounds the length; emptiness and '/' are the caller's business.
    auto buf = cstr("");
    auto more = cstr("/a/b");
    buf.insert(buf.end(), more.begin(), more.end());
    Reader r(buf);
    std::string_view s;
    ASSERT_TRUE(r.cstring(s, 100));
    EXPECT_EQ(s, "");
    ASSERT_TRUE(r.cstring(s, 100));
    EXPECT_EQ(s, "/a/b");
}

TEST(Reader, CstringMaxZeroAcceptsOnlyEmpty) {
    auto empty = cstr("");
    auto one = cstr("x");
    std::string_view s;
    Reader a(empty), b(one);
    EXPECT_TRUE(a.cstring(s, 0));
    EXPECT_FALSE(b.cstring(s, 0));
}

TEST(Reader, CstringWithoutLimitAcceptsShortString) {
    // SIZE_MAX is the natural "no limit" argument; max + 1 must not wrap to 0
    // and turn every string into a failure.
    auto buf = cstr("abc");
    Reader r(buf);
    std::string_view s;
    ASSERT_TRUE(r.cstring(s, std::numeric_limits<size_t>::max()));
    EXPECT_EQ(s, "abc");
}

TEST(Reader, CstringMissingNulWithinMaxFails) {
    // The NUL is present but beyond max: must not be found by a longer scan.
    auto buf = cstr("abcdefgh");
    Reader r(buf);
    std::string_view s;
    EXPECT_FALSE(r.cstring(s, 5));
}

// ---------------------------------------------------------------------------
// parse_request

std::vector<std::byte> make_request(uint32_t opcode, size_t body, uint16_t extlen_units = 0) {
    std::vector<std::byte> v(sizeof(fuse_in_header) + body);
    for (size_t i = 0; i < body; i++)
        v[sizeof(fuse_in_header) + i] = std::byte(i & 0xff);
    fuse_in_header h{};
    h.len = uint32_t(v.size());
    h.opcode = opcode;
    h.unique = 42;
    h.nodeid = 1;
    h.total_extlen = extlen_units;
    std::memcpy(v.data(), &h, sizeof(h));
    return v;
}

void set_len(std::vector<std::byte> &v, uint32_t len) {
    std::memcpy(v.data() + offsetof(fuse_in_header, len), &len, sizeof(len));
}

TEST(ParseRequest, ShortHeader) {
    Request req;
    std::vector<std::byte> v(sizeof(fuse_in_header) - 1);
    EXPECT_EQ(parse_request(v, req), ParseError::short_header);
    EXPECT_EQ(parse_request({}, req), ParseError::short_header);
}

TEST(ParseRequest, HeaderOnly) {
    auto v = make_request(FUSE_STATFS, 0);
    Request req;
    ASSERT_EQ(parse_request(v, req), ParseError::ok);
    EXPECT_EQ(req.hdr.opcode, uint32_t(FUSE_STATFS));
    EXPECT_EQ(req.hdr.unique, 42u);
    EXPECT_EQ(req.args.remaining(), 0u);
    EXPECT_TRUE(req.extensions.empty());
}

TEST(ParseRequest, LengthLargerThanReceived) {
    auto v = make_request(FUSE_GETATTR, 16);
    set_len(v, uint32_t(v.size() + 1));
    Request req;
    EXPECT_EQ(parse_request(v, req), ParseError::length_mismatch);
    set_len(v, 0xffffffffu);
    EXPECT_EQ(parse_request(v, req), ParseError::length_mismatch);
}

TEST(ParseRequest, LengthSmallerThanReceived) {
    auto v = make_request(FUSE_GETATTR, 16);
    set_len(v, uint32_t(v.size() - 1));
    Request req;
    EXPECT_EQ(parse_request(v, req), ParseError::length_mismatch);
    set_len(v, 0);
    EXPECT_EQ(parse_request(v, req), ParseError::length_mismatch);
}

TEST(ParseRequest, ExtlenBeyondBody) {
    Request req;
    auto v = make_request(FUSE_CREATE, 16, 3); // 24 bytes of extensions > 16
    EXPECT_EQ(parse_request(v, req), ParseError::bad_extlen);
    // The largest total_extlen (0xffff * 8) against a tiny body.
    auto w = make_request(FUSE_CREATE, 8, 0xffff);
    EXPECT_EQ(parse_request(w, req), ParseError::bad_extlen);
    auto z = make_request(FUSE_CREATE, 0, 1);
    EXPECT_EQ(parse_request(z, req), ParseError::bad_extlen);
}

TEST(ParseRequest, ExtensionsSplitOffTheEnd) {
    auto v = make_request(FUSE_CREATE, 40, 2); // 24 bytes args + 16 bytes ext
    Request req;
    ASSERT_EQ(parse_request(v, req), ParseError::ok);
    EXPECT_EQ(req.args.remaining(), 24u);
    ASSERT_EQ(req.extensions.size(), 16u);
    EXPECT_EQ(req.args.rest().data(), v.data() + sizeof(fuse_in_header));
    EXPECT_EQ(req.extensions.data(), v.data() + sizeof(fuse_in_header) + 24);
    EXPECT_EQ(req.extensions[0], std::byte{24});
}

TEST(ParseRequest, ExtensionsFillWholeBody) {
    auto v = make_request(FUSE_MKDIR, 16, 2);
    Request req;
    ASSERT_EQ(parse_request(v, req), ParseError::ok);
    EXPECT_EQ(req.args.remaining(), 0u);
    EXPECT_EQ(req.extensions.size(), 16u);
}

// Only the first bytes of the request at hand (a WRITE whose data stays in
// the transport's buffers): the header still answers for all of it.
TEST(ParseRequest, HeadOfALongerRequest)
{
    auto v = make_request(FUSE_WRITE, 140, 2); // 124 bytes of args, 16 of ext
    const std::span<const std::byte> head(v.data(), 80);
    Request req;
    ASSERT_EQ(parse_request(head, v.size(), req), ParseError::ok);
    EXPECT_EQ(req.args.remaining(), 40u); // what the head holds of them
    EXPECT_EQ(req.args.rest().data(), v.data() + sizeof(fuse_in_header));
    EXPECT_TRUE(req.extensions.empty()); // not in the head
    // The length must be the whole request's, never the head's.
    EXPECT_EQ(parse_request(head, 80, req), ParseError::length_mismatch);
    EXPECT_EQ(parse_request(head, v.size() + 1, req), ParseError::length_mismatch);
    EXPECT_EQ(parse_request(head, uint64_t(v.size()) + (1ull << 32), req),
              ParseError::length_mismatch);
    // Extensions that reach into the head leave it fewer arguments.
    auto w = make_request(FUSE_WRITE, 140, 15);
    ASSERT_EQ(parse_request(std::span<const std::byte>(w.data(), 80), w.size(), req),
              ParseError::ok);
    EXPECT_EQ(req.args.remaining(), 20u);
    auto z = make_request(FUSE_WRITE, 140, 18);
    EXPECT_EQ(parse_request(std::span<const std::byte>(z.data(), 80), z.size(), req),
              ParseError::bad_extlen);
    // A head longer than the request it is said to be the head of.
    auto u = make_request(FUSE_WRITE, 40);
    EXPECT_EQ(parse_request(u, 60, req), ParseError::length_mismatch);
}

TEST(ParseRequest, ErrorStringsAreDistinct) {
    std::string a = parse_error_str(ParseError::ok);
    std::string b = parse_error_str(ParseError::short_header);
    std::string c = parse_error_str(ParseError::length_mismatch);
    std::string d = parse_error_str(ParseError::bad_extlen);
    EXPECT_NE(a, b);
    EXPECT_NE(b, c);
    EXPECT_NE(c, d);
}

// ---------------------------------------------------------------------------
// Reply

TEST(Reply, ArgSetsLengthAndZeroes) {
    std::vector<std::byte> area(64);
    Reply r(area);
    r.reset(9);
    auto &e = r.arg<fuse_entry_out>();
    e.nodeid = 77;
    EXPECT_EQ(r.arg_bytes().size(), sizeof(fuse_entry_out));
    EXPECT_EQ(r.total_len(), sizeof(fuse_out_header) + sizeof(fuse_entry_out));

    // A second arg<>() of the same buffer starts from zeroes, not the old value.
    auto &e2 = r.arg<fuse_entry_out>();
    EXPECT_EQ(e2.nodeid, 0u);
    auto &w = r.arg<fuse_write_out>();
    w.size = 5;
    EXPECT_EQ(r.arg_bytes().size(), sizeof(fuse_write_out));
}

TEST(Reply, Args2PlacesStructsBackToBack) {
    std::vector<std::byte> area(64);
    Reply r(area);
    r.reset(1);
    auto [e, o] = r.args2<fuse_entry_out, fuse_open_out>();
    e->nodeid = 3;
    o->fh = 4;
    auto b = r.arg_bytes();
    ASSERT_EQ(b.size(), sizeof(fuse_entry_out) + sizeof(fuse_open_out));
    fuse_entry_out ce;
    fuse_open_out co;
    std::memcpy(&ce, b.data(), sizeof(ce));
    std::memcpy(&co, b.data() + sizeof(ce), sizeof(co));
    EXPECT_EQ(ce.nodeid, 3u);
    EXPECT_EQ(co.fh, 4u);
}

TEST(Reply, ResetClearsEverything) {
    std::vector<std::byte> area(64);
    Reply r(area);
    r.reset(1);
    r.arg<fuse_attr_out>();
    r.append_payload("abc", 3);
    r.set_error(-ENOENT);
    r.suppress();
    r.limit_payload(2);
    r.reset(2);
    EXPECT_EQ(r.unique(), 2u);
    EXPECT_EQ(r.error(), 0);
    EXPECT_TRUE(r.should_send());
    EXPECT_TRUE(r.arg_bytes().empty());
    EXPECT_TRUE(r.payload().empty());
    EXPECT_EQ(r.payload_space().size(), area.size());
}

TEST(Reply, PayloadAppendUpToCapacityThenRefuses) {
    std::vector<std::byte> area(8);
    Reply r(area);
    r.reset(1);
    EXPECT_TRUE(r.append_payload("abcde", 5));
    EXPECT_TRUE(r.append_payload("fgh", 3));
    EXPECT_FALSE(r.append_payload("i", 1));
    EXPECT_TRUE(r.append_payload("", 0));
    ASSERT_EQ(r.payload().size(), 8u);
    EXPECT_EQ(std::memcmp(r.payload().data(), "abcdefgh", 8), 0);
}

TEST(Reply, AppendThatWouldOverflowIsRefusedWhole) {
    std::vector<std::byte> area(8);
    Reply r(area);
    r.reset(1);
    ASSERT_TRUE(r.append_payload("abcdef", 6));
    EXPECT_FALSE(r.append_payload("xyz", 3)); // 9 > 8: nothing is copied
    EXPECT_EQ(r.payload().size(), 6u);
    EXPECT_FALSE(r.append_payload("x", SIZE_MAX)); // absurd size, no wrap
    EXPECT_EQ(r.payload().size(), 6u);
}

TEST(Reply, LimitPayloadCapsSpaceAndAppend) {
    std::vector<std::byte> area(64);
    Reply r(area);
    r.reset(1);
    r.limit_payload(4);
    EXPECT_EQ(r.payload_space().size(), 4u);
    EXPECT_FALSE(r.append_payload("abcde", 5));
    EXPECT_TRUE(r.append_payload("abcd", 4));
    // A limit larger than the area is capped by the area.
    r.reset(1);
    r.limit_payload(1000);
    EXPECT_EQ(r.payload_space().size(), 64u);
    r.limit_payload(0);
    EXPECT_TRUE(r.payload_space().empty());
    EXPECT_FALSE(r.append_payload("a", 1));
}

TEST(Reply, SetPayloadLenIsClampedToCapacity) {
    std::vector<std::byte> area(64);
    Reply r(area);
    r.reset(1);
    r.limit_payload(10);
    r.set_payload_len(100);
    EXPECT_EQ(r.payload().size(), 10u);
    r.set_payload_len(3);
    EXPECT_EQ(r.payload().size(), 3u);
}

TEST(Reply, LimitBelowCommittedLengthStillRefusesAppend) {
    // Invariant: payload never exceeds the cap.  Lowering the cap under data
    // already committed must not make `cap - len` wrap and let any append in.
    std::vector<std::byte> area(4096);
    Reply r(area);
    r.reset(1);
    r.set_payload_len(100);
    r.limit_payload(10);
    std::vector<char> junk(50, 'j');
    EXPECT_FALSE(r.append_payload(junk.data(), junk.size()));
    EXPECT_LE(r.payload().size(), 100u);
}

TEST(Reply, SetErrorClearsArgAndPayload) {
    std::vector<std::byte> area(64);
    Reply r(area);
    r.reset(5);
    r.arg<fuse_attr_out>();
    r.append_payload("data", 4);
    r.set_error(-ENOENT);
    EXPECT_EQ(r.error(), -ENOENT);
    EXPECT_TRUE(r.arg_bytes().empty());
    EXPECT_TRUE(r.payload().empty());
    EXPECT_EQ(r.total_len(), sizeof(fuse_out_header));
    auto h = r.header();
    EXPECT_EQ(h.len, sizeof(fuse_out_header));
    EXPECT_EQ(h.error, -ENOENT);
    EXPECT_EQ(h.unique, 5u);
}

TEST(Reply, ArgAfterErrorIsStillNotSent) {
    // A filesystem that fills its out struct after failing must not leak it.
    std::vector<std::byte> area(64);
    Reply r(area);
    r.reset(5);
    r.set_error(-EACCES);
    r.arg<fuse_attr_out>();
    r.append_payload("x", 1);
    EXPECT_TRUE(r.arg_bytes().empty());
    EXPECT_TRUE(r.payload().empty());
    EXPECT_EQ(r.header().len, sizeof(fuse_out_header));
}

TEST(Reply, HeaderLenCountsArgAndPayload) {
    std::vector<std::byte> area(64);
    Reply r(area);
    r.reset(0x8000000000000011ULL);
    r.arg<fuse_getxattr_out>();
    r.append_payload("0123456789", 10);
    auto h = r.header();
    EXPECT_EQ(h.len, sizeof(fuse_out_header) + sizeof(fuse_getxattr_out) + 10);
    EXPECT_EQ(h.error, 0);
    EXPECT_EQ(h.unique, 0x8000000000000011ULL);
    EXPECT_EQ(size_t(h.len), r.total_len());
}

TEST(Reply, PayloadOnly) {
    std::vector<std::byte> area(64);
    Reply r(area);
    r.reset(1);
    auto sp = r.payload_space();
    std::memset(sp.data(), 'z', 20);
    r.set_payload_len(20);
    EXPECT_TRUE(r.arg_bytes().empty());
    EXPECT_EQ(r.header().len, sizeof(fuse_out_header) + 20);
}

TEST(Reply, Suppress) {
    std::vector<std::byte> area(8);
    Reply r(area);
    r.reset(1);
    EXPECT_TRUE(r.should_send());
    r.suppress();
    EXPECT_FALSE(r.should_send());
    r.reset(2);
    EXPECT_TRUE(r.should_send());
}

} // namespace
