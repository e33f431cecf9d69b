// SPDX-License-Identifier: GPL-2.0
// The QMP client (src/vmm): its JSON parser on hostile input, and the
// re-plug sequence against a scripted QEMU (canned replies, no sockets).
#include "vmm/json.h"
#include "vmm/qmp.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

using namespace holdfast::vmm;

namespace {

json::Value parse_ok(const std::string &s)
{
    json::Value v;
    std::string e = json::parse(s, v);
    EXPECT_EQ(e, "") << s;
    return v;
}

std::string parse_err(const std::string &s)
{
    json::Value v;
    return json::parse(s, v);
}

} // namespace

TEST(Json, ParsesQmpShapes)
{
    json::Value g = parse_ok(R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2,
        "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}})");
    ASSERT_TRUE(g.is_object());
    const json::Value *qmp = g.get("QMP");
    ASSERT_NE(qmp, nullptr);
    const json::Value *caps = qmp->get("capabilities");
    ASSERT_NE(caps, nullptr);
    ASSERT_TRUE(caps->is_array());
    ASSERT_EQ(caps->array.size(), 1u);
    EXPECT_EQ(caps->array[0].string, "oob");
    const json::Value *minor = qmp->get("version")->get("qemu")->get("minor");
    ASSERT_TRUE(minor && minor->is_integer());
    EXPECT_EQ(minor->integer, 2);

    json::Value r = parse_ok(R"({"return": 128, "id": 7})");
    EXPECT_TRUE(r.get("return")->is_integer());
    EXPECT_EQ(r.get("return")->integer, 128);
    json::Value e = parse_ok(
        R"({"error": {"class": "DeviceNotFound", "desc": "Device 'x' not found"}, "id": 3})");
    EXPECT_EQ(*e.get("error")->get_string("class"), "DeviceNotFound");
    json::Value empty = parse_ok(R"({"return": {}})");
    EXPECT_TRUE(empty.get("return")->is_object());
    EXPECT_TRUE(parse_ok("  [ ] ").is_array());
    EXPECT_TRUE(parse_ok("null").is_null());
    EXPECT_TRUE(parse_ok("true").boolean);
    EXPECT_FALSE(parse_ok("false").boolean);
}

TEST(Json, Numbers)
{
    EXPECT_EQ(parse_ok("-42").integer, -42);
    EXPECT_TRUE(parse_ok("0").is_integer());
    EXPECT_FALSE(parse_ok("1.5").is_integer());
    EXPECT_DOUBLE_EQ(parse_ok("1.5").number, 1.5);
    EXPECT_FALSE(parse_ok("1e3").is_integer());
    EXPECT_DOUBLE_EQ(parse_ok("1e3").number, 1000);
    // Out of int64 range: a number, not an integer.
    EXPECT_FALSE(parse_ok("99999999999999999999").is_integer());
    EXPECT_NE(parse_err("01"), "");
    EXPECT_NE(parse_err("-"), "");
    EXPECT_NE(parse_err("1."), "");
    EXPECT_NE(parse_err("1e"), "");
    EXPECT_NE(parse_err("+1"), "");
    EXPECT_NE(parse_err(std::string(65, '1')), ""); // longer than any sane number
}

TEST(Json, StringsAndEscapes)
{
    EXPECT_EQ(parse_ok(R"("a\"b\\c\/d\n\t")").string, "a\"b\\c/d\n\t");
    EXPECT_EQ(parse_ok(R"("\u00e9")").string, "\xc3\xa9");
    EXPECT_EQ(parse_ok(R"("\u20ac")").string, "\xe2\x82\xac");
    EXPECT_EQ(parse_ok(R"("\ud83d\ude00")").string, "\xf0\x9f\x98\x80");
    EXPECT_NE(parse_err(R"("\ud83d")"), "");       // lone high surrogate
    EXPECT_NE(parse_err(R"("\ude00")"), "");       // lone low surrogate
    EXPECT_NE(parse_err(R"("\ud83d\u0041")"), ""); // high + not-low
    EXPECT_NE(parse_err(R"("\u12")"), "");         // truncated
    EXPECT_NE(parse_err(R"("\u12g4")"), "");
    EXPECT_NE(parse_err(R"("\x")"), "");
    EXPECT_NE(parse_err("\"a\nb\""), ""); // raw control character
    EXPECT_NE(parse_err(R"("abc)"), "");
    EXPECT_NE(parse_err(R"("abc\)"), "");
}

TEST(Json, RefusesMalformedAndTruncated)
{
    for (const char *s : {"", "{", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":1,}", "{a:1}", "[1,",
                          "[1 2]", "{\"a\" 1}", "tru", "nul", "{} {}", "]", "{\"a\":1]"})
        EXPECT_NE(parse_err(s), "") << s;
}

TEST(Json, DepthIsBounded)
{
    std::string deep(json::kMaxDepth + 1, '[');
    deep += std::string(json::kMaxDepth + 1, ']');
    EXPECT_NE(parse_err(deep), "");
    std::string ok(json::kMaxDepth - 1, '[');
    ok += std::string(json::kMaxDepth - 1, ']');
    EXPECT_EQ(parse_err(ok), "");
    // An unterminated deep prefix fails without running off the end.
    EXPECT_NE(parse_err(std::string(100000, '[')), "");
}

TEST(Json, QuoteRoundTrips)
{
    std::string nasty = std::string("a\"b\\c\n\x01\x1f/") + "\xc3\xa9";
    std::string q = json::quote(nasty);
    EXPECT_EQ(q.find('\n'), std::string::npos);
    EXPECT_EQ(parse_ok(q).string, nasty);
    EXPECT_EQ(json::quote(""), "\"\"");
}

TEST(Json, DuplicateKeysTakeTheFirst)
{
    json::Value v = parse_ok(R"({"a": 1, "a": 2})");
    EXPECT_EQ(v.get("a")->integer, 1);
    EXPECT_EQ(v.get("b"), nullptr);
    EXPECT_EQ(v.get_string("a"), nullptr); // not a string
}

namespace {

// A scripted QEMU: each command the client writes is answered by `qemu`
// with the lines QEMU would send (events included); "$ID" in them becomes
// the command's id.
class FakeQemu final : public Channel {
  public:
    using Handler =
        std::function<std::vector<std::string>(const std::string &cmd, const json::Value &args)>;
    explicit FakeQemu(Handler h) : h_(std::move(h))
    {
        out_.push_back(R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7},)"
                       R"( "package": ""}, "capabilities": ["oob"]}})");
    }
    bool write_line(const std::string &line, std::string &err) override
    {
        if (closed) {
            err = "closed";
            return false;
        }
        json::Value v;
        EXPECT_EQ(json::parse(line, v), "") << line;
        const std::string *cmd = v.get_string("execute");
        EXPECT_NE(cmd, nullptr) << line;
        const json::Value *id = v.get("id");
        EXPECT_TRUE(id && id->is_integer()) << line;
        static const json::Value kNone;
        const json::Value *args = v.get("arguments");
        commands.push_back(*cmd);
        lines.push_back(line);
        std::vector<std::string> replies;
        if (*cmd == "qmp_capabilities")
            replies = {R"({"return": {}, "id": $ID})"};
        else
            replies = h_(*cmd, args ? *args : kNone);
        for (std::string r : replies) {
            size_t p;
            while ((p = r.find("$ID")) != std::string::npos)
                r.replace(p, 3, std::to_string(id->integer));
            out_.push_back(r);
        }
        return true;
    }
    int read_line(std::string &line, int, std::string &err) override
    {
        if (out_.empty()) {
            if (closed) {
                err = "QMP connection closed";
                return -1;
            }
            return 0; // timeout
        }
        line = out_.front();
        out_.pop_front();
        return 1;
    }
    std::vector<std::string> commands;
    std::vector<std::string> lines;
    bool closed = false;

  private:
    Handler h_;
    std::deque<std::string> out_;
};

const std::map<std::string, std::string> kProps = {
    {"type", "\"vhost-user-fs-pci\""},
    {"tag", "\"myfs\""},
    {"chardev", "\"char0\""},
    {"parent_bus", "\"/machine/i440fx/pci.0\""},
    {"num-request-queues", "2"},
    {"queue-size", "1024"},
    {"addr", "16"},
};

std::vector<std::string> qom_get(const json::Value &args)
{
    const std::string *path = args.get_string("path");
    const std::string *prop = args.get_string("property");
    if (!path || *path != "/machine/peripheral/fs0")
        return {R"({"error": {"class": "DeviceNotFound", "desc": "Device not found"}, "id": $ID})"};
    auto it = kProps.find(prop ? *prop : "");
    if (it == kProps.end())
        return {R"({"error": {"class": "GenericError", "desc": "no such property"}, "id": $ID})"};
    return {"{\"return\": " + it->second + ", \"id\": $ID}"};
}

// QEMU that behaves: events arrive around the device_del reply.
std::vector<std::string> good_qemu(const std::string &cmd, const json::Value &args)
{
    if (cmd == "qom-get")
        return qom_get(args);
    if (cmd == "device_del")
        return {
            R"({"return": {}, "id": $ID})",
            R"({"timestamp": {"seconds": 1, "microseconds": 2}, "event": "DEVICE_DELETED",)"
            R"( "data": {"path": "/machine/peripheral/fs0/virtio-backend"}})",
            R"({"timestamp": {"seconds": 1, "microseconds": 3}, "event": "DEVICE_DELETED",)"
            R"( "data": {"device": "fs0", "path": "/machine/peripheral/fs0"}})",
        };
    if (cmd == "chardev-remove" || cmd == "chardev-add" || cmd == "device_add")
        return {R"({"return": {}, "id": $ID})"};
    return {R"({"error": {"class": "CommandNotFound", "desc": "?"}, "id": $ID})"};
}

ReplugOptions opts()
{
    ReplugOptions o;
    o.device = "fs0";
    o.socket_path = "/run/hf/fs.sock";
    o.delete_timeout_ms = 50;
    return o;
}

const json::Value *args_of(const FakeQemu &q, const std::string &cmd, json::Value &holder)
{
    for (size_t i = 0; i < q.commands.size(); i++) {
        if (q.commands[i] == cmd) {
            EXPECT_EQ(json::parse(q.lines[i], holder), "");
            return holder.get("arguments");
        }
    }
    return nullptr;
}

} // namespace

TEST(Qmp, ReplugRunsTheWholeSequence)
{
    FakeQemu q(good_qemu);
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    std::vector<std::string> log;
    ReplugOptions o = opts();
    o.log = [&](const std::string &s) { log.push_back(s); };
    ReplugResult r = replug(c, o);
    EXPECT_EQ(r.status, ReplugStatus::ok) << r.message;
    std::vector<std::string> want = {
        "qmp_capabilities", "qom-get",    "qom-get",        "qom-get",     "qom-get",
        "qom-get",          "qom-get",    "qom-get",        "qom-get",     "device_del",
        "chardev-remove",   "chardev-add", "device_add"};
    EXPECT_EQ(q.commands, want);
    EXPECT_FALSE(log.empty());

    json::Value h1, h2, h3;
    const json::Value *add = args_of(q, "device_add", h1);
    ASSERT_NE(add, nullptr);
    EXPECT_EQ(*add->get_string("driver"), "vhost-user-fs-pci");
    EXPECT_EQ(*add->get_string("id"), "fs0");
    EXPECT_EQ(*add->get_string("tag"), "myfs");
    EXPECT_EQ(*add->get_string("bus"), "pci.0");
    EXPECT_EQ(*add->get_string("addr"), "2.0"); // devfn 16 = slot 2, function 0
    EXPECT_EQ(add->get("num-request-queues")->integer, 2);
    EXPECT_EQ(add->get("queue-size")->integer, 1024);
    EXPECT_EQ(add->get("cache-size"), nullptr); // a stock QEMU has no window
    const std::string *chardev = add->get_string("chardev");
    ASSERT_NE(chardev, nullptr);
    EXPECT_NE(*chardev, "char0"); // a fresh one

    const json::Value *cadd = args_of(q, "chardev-add", h2);
    ASSERT_NE(cadd, nullptr);
    EXPECT_EQ(*cadd->get_string("id"), *chardev);
    const json::Value *data = cadd->get("backend")->get("data");
    EXPECT_EQ(*cadd->get("backend")->get_string("type"), "socket");
    EXPECT_EQ(*data->get("addr")->get("data")->get_string("path"), "/run/hf/fs.sock");
    EXPECT_FALSE(data->get("server")->boolean);

    const json::Value *crm = args_of(q, "chardev-remove", h3);
    EXPECT_EQ(*crm->get_string("id"), "char0");
}

TEST(Qmp, PropsAreReportedBeforeDeviceDel)
{
    FakeQemu q(good_qemu);
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    ReplugOptions o = opts();
    size_t at = 0;
    DeviceProps seen;
    o.on_props = [&](const DeviceProps &p) {
        seen = p;
        at = q.commands.size();
    };
    ASSERT_EQ(replug(c, o).status, ReplugStatus::ok);
    EXPECT_EQ(seen.tag, "myfs");
    ASSERT_LT(at, q.commands.size());
    EXPECT_EQ(q.commands[at], "device_del"); // reported before anything changed
    DeviceProps back;
    ASSERT_TRUE(props_from_json(props_to_json(seen), back));
    EXPECT_EQ(back.tag, "myfs");
    EXPECT_EQ(back.chardev, "char0");
    EXPECT_EQ(back.bus, "pci.0");
    EXPECT_EQ(back.addr, "2.0");
    EXPECT_EQ(back.num_request_queues, 2);
    EXPECT_EQ(back.queue_size, 1024);
    for (const char *bad : {"", "{}", "[]", R"({"tag": ""})", "{\"tag\": 1}",
                            R"({"tag":"t","chardev":"c","bus":"b","addr":"a",)"
                            R"("num-request-queues":"1","queue-size":1})",
                            R"({"tag":"t","chardev":"c","bus":"b","addr":"a",)"
                            R"("num-request-queues":1,"queue-size":1,"cache-size":"1"})"})
        EXPECT_FALSE(props_from_json(bad, back)) << bad;
    // Written by a server before DAX: no cache-size, no window.
    ASSERT_TRUE(props_from_json(R"({"tag":"t","chardev":"c","bus":"b","addr":"a",)"
                                R"("num-request-queues":1,"queue-size":1})",
                                back));
    EXPECT_EQ(back.cache_size, -1);
}

// Our patched QEMU: the new device gets the window the old one had, or a
// parked guest would not take it over.
TEST(Qmp, ReplugKeepsTheDaxWindow)
{
    FakeQemu q([](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "qom-get" && *args.get_string("property") == "cache-size")
            return {R"({"return": 16777216, "id": $ID})"};
        return good_qemu(cmd, args);
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    DeviceProps seen;
    ReplugOptions o = opts();
    o.on_props = [&](const DeviceProps &p) { seen = p; };
    ASSERT_EQ(replug(c, o).status, ReplugStatus::ok);
    EXPECT_EQ(seen.cache_size, 16777216);
    json::Value h;
    const json::Value *add = args_of(q, "device_add", h);
    ASSERT_NE(add, nullptr);
    ASSERT_NE(add->get("cache-size"), nullptr);
    EXPECT_EQ(add->get("cache-size")->integer, 16777216);
    DeviceProps back;
    ASSERT_TRUE(props_from_json(props_to_json(seen), back));
    EXPECT_EQ(back.cache_size, 16777216);
}

// A cache-size that is not a number is a broken QEMU, not a stock one.
TEST(Qmp, ReplugRefusesABadCacheSize)
{
    FakeQemu q([](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "qom-get" && *args.get_string("property") == "cache-size")
            return {R"({"return": "big", "id": $ID})"};
        return good_qemu(cmd, args);
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    ReplugResult r = replug(c, opts());
    EXPECT_NE(r.status, ReplugStatus::ok);
    EXPECT_NE(r.message.find("cache-size"), std::string::npos) << r.message;
    for (const std::string &cmd : q.commands)
        EXPECT_NE(cmd, "device_del"); // nothing was changed
}

TEST(Qmp, ReplugCutShortAfterChardevAddRemovesTheOrphan)
{
    // The server died after its chardev-add and before device_add: the
    // chardev it added (connected, used by nothing) holds the next id.
    // Its successor removes it and adds the device on a fresh chardev.
    std::vector<std::string> removed;
    bool hf2_exists = true;
    FakeQemu q([&](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "qom-get")
            return {R"({"error": {"class": "DeviceNotFound", "desc": "gone"}, "id": $ID})"};
        if (cmd == "query-chardev")
            return {R"({"return": [{"label": "fs0-hf2", "filename": "unix:/run/hf/fs.sock",)"
                    R"( "frontend-open": false}, {"label": "mon0", "filename": "x"}], "id": $ID})"};
        if (cmd == "chardev-remove") {
            removed.push_back(*args.get_string("id"));
            if (removed.back() == "fs0-hf2")
                hf2_exists = false;
        }
        if (cmd == "chardev-add" && hf2_exists &&
            *args.get_string("id") == "fs0-hf2")
            return {R"({"error": {"class": "GenericError", "desc": "Chardev with id 'fs0-hf2')"
                    R"( already exists"}, "id": $ID})"};
        return good_qemu(cmd, args);
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    ReplugOptions o = opts();
    o.known = {"myfs", "fs0-hf1", "pci.0", "2.0", 1, 128};
    ReplugResult r = replug(c, o);
    EXPECT_EQ(r.status, ReplugStatus::ok) << r.message;
    std::vector<std::string> want_removed = {"fs0-hf1", "fs0-hf2"};
    EXPECT_EQ(removed, want_removed) << "mon0 is not ours; fs0-hf2 is the orphan";
}

TEST(Qmp, ReplugCutShortDuringUnplugWaitsForTheDeviceToGo)
{
    // The predecessor was killed after its device_del: QEMU refuses a
    // second one while the guest releases the device, and the
    // DEVICE_DELETED may never reach us.  The successor watches the
    // device go, then adds it back.
    int qom_type_calls = 0;
    FakeQemu q([&](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "qom-get" && *args.get_string("property") == "type" && ++qom_type_calls > 3)
            return {R"({"error": {"class": "DeviceNotFound", "desc": "gone"}, "id": $ID})"};
        if (cmd == "device_del")
            return {R"({"error": {"class": "GenericError", "desc": "Device fs0 is already in)"
                    R"( the process of unplug"}, "id": $ID})"};
        return good_qemu(cmd, args);
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    ReplugOptions o = opts();
    o.delete_timeout_ms = 2000;
    ReplugResult r = replug(c, o);
    EXPECT_EQ(r.status, ReplugStatus::ok) << r.message;
    EXPECT_EQ(q.commands.back(), "device_add");
}

TEST(Qmp, ReplugCutShortIsFinished)
{
    // A server died between device_del and device_add: the device is gone,
    // and its successor adds it back from the properties it was handed.
    FakeQemu q([](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "qom-get")
            return {R"({"error": {"class": "DeviceNotFound", "desc": "gone"}, "id": $ID})"};
        return good_qemu(cmd, args);
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    ReplugOptions o = opts();
    o.known = {"myfs", "char0", "pci.0", "2.0", 2, 1024};
    ReplugResult r = replug(c, o);
    EXPECT_EQ(r.status, ReplugStatus::ok) << r.message;
    std::vector<std::string> want = {"qmp_capabilities", "qom-get", "chardev-remove",
                                     "query-chardev", "chardev-add", "device_add"};
    EXPECT_EQ(q.commands, want);
    json::Value h;
    const json::Value *add = args_of(q, "device_add", h);
    EXPECT_EQ(*add->get_string("tag"), "myfs");
    EXPECT_EQ(*add->get_string("addr"), "2.0");
}

TEST(Qmp, NoSuchDevice)
{
    FakeQemu q(good_qemu);
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    ReplugOptions o = opts();
    o.device = "other";
    ReplugResult r = replug(c, o);
    EXPECT_EQ(r.status, ReplugStatus::no_device);
    // Nothing was changed in the VM.
    for (const auto &cmd : q.commands)
        EXPECT_TRUE(cmd == "qmp_capabilities" || cmd == "qom-get") << cmd;
}

TEST(Qmp, WrongDeviceTypeIsRefused)
{
    FakeQemu q([](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "qom-get" && *args.get_string("property") == "type")
            return {R"({"return": "virtio-blk-pci", "id": $ID})"};
        return good_qemu(cmd, args);
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    ReplugResult r = replug(c, opts());
    EXPECT_EQ(r.status, ReplugStatus::failed);
    EXPECT_NE(r.message.find("virtio-blk-pci"), std::string::npos);
    EXPECT_EQ(std::count(q.commands.begin(), q.commands.end(), "device_del"), 0);
}

TEST(Qmp, GuestThatNeverReleasesTheDevice)
{
    // Stock guests wait in virtio_fs_remove for requests the dead back-end
    // had: no DEVICE_DELETED.  Bounded, and nothing is added.
    FakeQemu q([](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "device_del")
            return {R"({"return": {}, "id": $ID})"};
        return good_qemu(cmd, args);
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    ReplugResult r = replug(c, opts());
    EXPECT_EQ(r.status, ReplugStatus::failed);
    EXPECT_NE(r.message.find("DEVICE_DELETED"), std::string::npos);
    EXPECT_EQ(q.commands.back(), "device_del");
}

TEST(Qmp, EventsForOtherDevicesDoNotCount)
{
    FakeQemu q([](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "device_del")
            return {R"({"event": "DEVICE_DELETED", "data": {"device": "fs01"}})",
                    R"({"event": "DEVICE_DELETED", "data": "not an object"})",
                    R"({"event": "DEVICE_DELETED"})", R"({"return": {}, "id": $ID})"};
        return good_qemu(cmd, args);
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    EXPECT_EQ(replug(c, opts()).status, ReplugStatus::failed);
}

TEST(Qmp, DeviceAddFailureRemovesTheNewChardev)
{
    FakeQemu q([](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "device_add")
            return {R"({"error": {"class": "GenericError", "desc": "Duplicate ID"}, "id": $ID})"};
        return good_qemu(cmd, args);
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    ReplugResult r = replug(c, opts());
    EXPECT_EQ(r.status, ReplugStatus::failed);
    EXPECT_NE(r.message.find("Duplicate ID"), std::string::npos);
    ASSERT_GE(q.commands.size(), 2u);
    EXPECT_EQ(q.commands.back(), "chardev-remove");
}

TEST(Qmp, DuplicateChardevIdTriesTheNext)
{
    int tries = 0;
    FakeQemu q([&](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "chardev-add" && tries++ == 0)
            return {R"x({"error": {"class": "GenericError", "desc": "attempt to add duplicate)x"
                    R"x( property 'fs0-hf1' to object (type 'container')"}, "id": $ID})x"};
        return good_qemu(cmd, args);
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    EXPECT_EQ(replug(c, opts()).status, ReplugStatus::ok);
    json::Value h;
    EXPECT_EQ(*args_of(q, "device_add", h)->get_string("chardev"), "fs0-hf2");
}

TEST(Qmp, RepliesAreMatchedById)
{
    // A stale reply (another id) and garbage-free events before ours.
    FakeQemu q([](const std::string &cmd, const json::Value &) -> std::vector<std::string> {
        if (cmd == "query-status")
            return {R"({"return": "stale", "id": 999})", R"({"event": "RESUME"})",
                    R"({"return": {"status": "running"}, "id": $ID})"};
        return {};
    });
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    Reply r = c.execute("query-status");
    ASSERT_TRUE(r.ok) << r.desc;
    EXPECT_EQ(*r.ret.get_string("status"), "running");
    EXPECT_TRUE(c.wait_event(
        "RESUME", [](const json::Value &) { return true; }, 10));
    EXPECT_FALSE(c.wait_event(
        "RESUME", [](const json::Value &) { return true; }, 10));
}

TEST(Qmp, TimeoutAndGarbage)
{
    FakeQemu q([](const std::string &cmd, const json::Value &) -> std::vector<std::string> {
        if (cmd == "garbage")
            return {"this is not json"};
        return {}; // never answers
    });
    Client c(q, 20);
    ASSERT_EQ(c.handshake(), "");
    Reply r = c.execute("silence");
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.error_class, "Timeout");
    EXPECT_FALSE(c.broken());
    r = c.execute("garbage");
    EXPECT_FALSE(r.ok);
    EXPECT_TRUE(c.broken());
    // Once broken, nothing more is sent.
    size_t n = q.commands.size();
    EXPECT_FALSE(c.execute("query-status").ok);
    EXPECT_EQ(q.commands.size(), n);
}

TEST(Qmp, QemuGoingAwayMidwayIsQemuGone)
{
    FakeQemu *qp = nullptr;
    FakeQemu q([&](const std::string &cmd, const json::Value &args) -> std::vector<std::string> {
        if (cmd == "device_del") {
            qp->closed = true; // QEMU quit under us
            return {};
        }
        return good_qemu(cmd, args);
    });
    qp = &q;
    Client c(q, 50);
    ASSERT_EQ(c.handshake(), "");
    EXPECT_EQ(replug(c, opts()).status, ReplugStatus::qemu_gone);
}

TEST(Qmp, HandshakeNeedsAGreeting)
{
    struct Silent final : Channel {
        bool write_line(const std::string &, std::string &) override { return true; }
        int read_line(std::string &, int, std::string &) override { return 0; }
    } silent;
    Client c(silent, 10);
    EXPECT_NE(c.handshake().find("no QMP greeting"), std::string::npos);
}

TEST(Qmp, DeviceAddArgsQuoteEverything)
{
    DeviceProps p;
    p.tag = "a\"b";
    std::string a = device_add_args("fs0", "c\\1", p);
    json::Value v = parse_ok(a);
    EXPECT_EQ(*v.get_string("tag"), "a\"b");
    EXPECT_EQ(*v.get_string("chardev"), "c\\1");
    EXPECT_EQ(v.get("bus"), nullptr); // unknown: left to QEMU
    EXPECT_EQ(v.get("addr"), nullptr);
    EXPECT_EQ(v.get("queue-size"), nullptr);
}

TEST(Qmp, ReplugAtAMissingSocketMeansQemuIsGone)
{
    ReplugResult r = replug_at("/nonexistent/qmp.sock", opts());
    EXPECT_EQ(r.status, ReplugStatus::qemu_gone);
}
