// SPDX-License-Identifier: GPL-2.0
#include "vmm/qmp.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

namespace holdfast::vmm {

std::string SocketChannel::connect(const std::string &path, bool &refused)
{
    refused = false;
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(sa.sun_path))
        return "QMP socket path '" + path + "' is not a UNIX socket path";
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd_)
        return std::string("socket: ") + strerror(errno);
    if (::connect(fd_.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) < 0) {
        int e = errno;
        refused = e == ENOENT || e == ECONNREFUSED;
        fd_.reset();
        return "connect " + path + ": " + strerror(e);
    }
    buf_.clear();
    return "";
}

bool SocketChannel::write_line(const std::string &line, std::string &err)
{
    std::string out = line + "\n";
    size_t off = 0;
    while (off < out.size()) {
        ssize_t n = send(fd_.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = std::string("QMP write: ") + strerror(errno);
            return false;
        }
        off += size_t(n);
    }
    return true;
}

int SocketChannel::read_line(std::string &line, int timeout_ms, std::string &err)
{
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        size_t nl = buf_.find('\n');
        if (nl != std::string::npos) {
            line.assign(buf_, 0, nl);
            buf_.erase(0, nl + 1);
            return 1;
        }
        if (buf_.size() > kMaxLine) {
            err = "QMP sent a line over " + std::to_string(kMaxLine) + " bytes";
            return -1;
        }
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0)
            return 0;
        pollfd p{fd_.get(), POLLIN, 0};
        int r = poll(&p, 1, int(left));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = std::string("QMP poll: ") + strerror(errno);
            return -1;
        }
        if (r == 0)
            return 0;
        char chunk[4096];
        ssize_t n = recv(fd_.get(), chunk, sizeof(chunk), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err = std::string("QMP read: ") + strerror(errno);
            return -1;
        }
        if (n == 0) {
            err = "QMP connection closed";
            return -1;
        }
        buf_.append(chunk, size_t(n));
    }
}

int Client::read_message(json::Value &msg, int timeout_ms, std::string &err)
{
    std::string line;
    int r = ch_.read_line(line, timeout_ms, err);
    if (r <= 0) {
        if (r < 0)
            broken_ = true;
        return r;
    }
    std::string e = json::parse(line, msg);
    if (!e.empty() || !msg.is_object()) {
        err = "QMP sent something that is not a JSON object (" + (e.empty() ? "not an object" : e) +
              ")";
        broken_ = true;
        return -1;
    }
    return 1;
}

std::string Client::handshake()
{
    json::Value g;
    std::string err;
    int r = read_message(g, timeout_ms_, err);
    if (r == 0)
        return "no QMP greeting within " + std::to_string(timeout_ms_) +
               " ms (is another client connected to this QMP socket?)";
    if (r < 0)
        return err;
    if (!g.get("QMP"))
        return "not a QMP greeting";
    Reply rep = execute("qmp_capabilities");
    if (!rep.ok)
        return "qmp_capabilities: " + rep.desc;
    return "";
}

Reply Client::execute(const std::string &command, const std::string &args_json)
{
    Reply rep;
    if (broken_) {
        rep.error_class = "Protocol";
        rep.desc = "QMP connection is broken";
        return rep;
    }
    const uint64_t id = next_id_++;
    std::string line = "{\"execute\":" + json::quote(command);
    if (!args_json.empty())
        line += ",\"arguments\":" + args_json;
    line += ",\"id\":" + std::to_string(id) + "}";
    std::string err;
    if (!ch_.write_line(line, err)) {
        broken_ = true;
        rep.error_class = "Protocol";
        rep.desc = err;
        return rep;
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms_);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        json::Value msg;
        int r = left > 0 ? read_message(msg, int(left), err) : 0;
        if (r == 0) {
            rep.error_class = "Timeout";
            rep.desc = "no reply to " + command + " within " + std::to_string(timeout_ms_) + " ms";
            return rep;
        }
        if (r < 0) {
            rep.error_class = "Protocol";
            rep.desc = err;
            return rep;
        }
        if (msg.get("event")) {
            if (events_.size() < 256) // a flood of events must not grow us
                events_.push_back(std::move(msg));
            continue;
        }
        // Replies carry our id back; one without (or with another) is not ours.
        const json::Value *rid = msg.get("id");
        if (!rid || !rid->is_integer() || uint64_t(rid->integer) != id)
            continue;
        if (const json::Value *ret = msg.get("return")) {
            rep.ok = true;
            rep.ret = *ret;
            return rep;
        }
        const json::Value *e = msg.get("error");
        const std::string *cls = e ? e->get_string("class") : nullptr;
        const std::string *desc = e ? e->get_string("desc") : nullptr;
        rep.error_class = cls ? *cls : "Protocol";
        rep.desc = desc ? *desc : "reply with neither return nor error";
        return rep;
    }
}

bool Client::wait_event(const std::string &name,
                        const std::function<bool(const json::Value &)> &match, int timeout_ms)
{
    static const json::Value kNull;
    auto matches = [&](const json::Value &ev) {
        const std::string *n = ev.get_string("event");
        const json::Value *data = ev.get("data");
        return n && *n == name && match(data ? *data : kNull);
    };
    for (auto it = events_.begin(); it != events_.end(); ++it) {
        if (matches(*it)) {
            events_.erase(it);
            return true;
        }
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now())
                        .count();
        if (left <= 0 || broken_)
            return false;
        json::Value msg;
        std::string err;
        if (read_message(msg, int(left), err) <= 0)
            return false;
        if (msg.get("event") && matches(msg))
            return true;
    }
}

namespace {

std::string qom_args(const std::string &id, const char *prop)
{
    return "{\"path\":" + json::quote("/machine/peripheral/" + id) +
           ",\"property\":" + json::quote(prop) + "}";
}

} // namespace

Reply read_device(Client &c, const std::string &id, DeviceProps &out)
{
    Reply r = c.execute("qom-get", qom_args(id, "type"));
    if (!r.ok)
        return r;
    if (!r.ret.is_string() || r.ret.string != "vhost-user-fs-pci") {
        r.ok = false;
        r.error_class = "WrongType";
        r.desc = "device '" + id + "' is a " + (r.ret.is_string() ? r.ret.string : "?") +
                 ", not a vhost-user-fs-pci";
        return r;
    }
    for (const char *p : {"tag", "chardev", "parent_bus"}) {
        r = c.execute("qom-get", qom_args(id, p));
        if (!r.ok)
            return r;
        if (!r.ret.is_string()) {
            r.ok = false;
            r.error_class = "Protocol";
            r.desc = std::string("qom-get ") + p + ": not a string";
            return r;
        }
        std::string v = r.ret.string;
        if (!strcmp(p, "tag"))
            out.tag = v;
        else if (!strcmp(p, "chardev"))
            out.chardev = v;
        else // "/machine/i440fx/pci.0": device_add wants the bus's name
            out.bus = v.substr(v.rfind('/') + 1);
    }
    for (const char *p : {"num-request-queues", "queue-size", "addr"}) {
        r = c.execute("qom-get", qom_args(id, p));
        if (!r.ok)
            return r;
        if (!r.ret.is_integer()) {
            r.ok = false;
            r.error_class = "Protocol";
            r.desc = std::string("qom-get ") + p + ": not an integer";
            return r;
        }
        int64_t v = r.ret.integer;
        if (!strcmp(p, "num-request-queues")) {
            out.num_request_queues = v;
        } else if (!strcmp(p, "queue-size")) {
            out.queue_size = v;
        } else if (v >= 0 && v < 256) {
            // qom-get gives the devfn; device_add takes "slot.fn" (-1: auto).
            char b[16];
            snprintf(b, sizeof(b), "%x.%x", unsigned(v >> 3), unsigned(v & 7));
            out.addr = b;
        }
    }
    // Only our patched QEMU has it: a stock one says there is no such
    // property, and then there is no window to give the new device.
    r = c.execute("qom-get", qom_args(id, "cache-size"));
    if (r.ok && r.ret.is_integer()) {
        out.cache_size = r.ret.integer;
    } else if (r.ok || r.error_class != "GenericError") {
        r.ok = false;
        r.error_class = r.error_class.empty() ? "Protocol" : r.error_class;
        r.desc = "qom-get cache-size: " + (r.desc.empty() ? "not an integer" : r.desc);
        return r;
    } else {
        r = Reply{};
        r.ok = true;
    }
    if (out.tag.empty()) {
        r.ok = false;
        r.error_class = "Protocol";
        r.desc = "device '" + id + "' has no tag";
    }
    return r;
}

std::string device_add_args(const std::string &id, const std::string &chardev, const DeviceProps &p)
{
    std::string a = "{\"driver\":\"vhost-user-fs-pci\",\"id\":" + json::quote(id) +
                    ",\"chardev\":" + json::quote(chardev) + ",\"tag\":" + json::quote(p.tag);
    if (p.num_request_queues > 0)
        a += ",\"num-request-queues\":" + std::to_string(p.num_request_queues);
    if (p.queue_size > 0)
        a += ",\"queue-size\":" + std::to_string(p.queue_size);
    if (!p.bus.empty())
        a += ",\"bus\":" + json::quote(p.bus);
    if (!p.addr.empty())
        a += ",\"addr\":" + json::quote(p.addr);
    if (p.cache_size >= 0)
        a += ",\"cache-size\":" + std::to_string(p.cache_size);
    return a + "}";
}

std::string props_to_json(const DeviceProps &p)
{
    return "{\"tag\":" + json::quote(p.tag) + ",\"chardev\":" + json::quote(p.chardev) +
           ",\"bus\":" + json::quote(p.bus) + ",\"addr\":" + json::quote(p.addr) +
           ",\"num-request-queues\":" + std::to_string(p.num_request_queues) +
           ",\"queue-size\":" + std::to_string(p.queue_size) +
           ",\"cache-size\":" + std::to_string(p.cache_size) + "}";
}

bool props_from_json(const std::string &text, DeviceProps &out)
{
    json::Value v;
    if (!json::parse(text, v).empty() || !v.is_object())
        return false;
    const std::string *tag = v.get_string("tag"), *chardev = v.get_string("chardev"),
                      *bus = v.get_string("bus"), *addr = v.get_string("addr");
    const json::Value *nrq = v.get("num-request-queues"), *qs = v.get("queue-size");
    if (!tag || tag->empty() || !chardev || !bus || !addr || !nrq || !nrq->is_integer() || !qs ||
        !qs->is_integer())
        return false;
    // cache-size is optional: a server before DAX did not write it.
    const json::Value *cs = v.get("cache-size");
    if (cs && !cs->is_integer())
        return false;
    out = DeviceProps{*tag, *chardev, *bus, *addr, nrq->integer, qs->integer, cs ? cs->integer : -1};
    return true;
}

const char *replug_status_name(ReplugStatus s)
{
    switch (s) {
    case ReplugStatus::ok:
        return "ok";
    case ReplugStatus::qemu_gone:
        return "qemu-gone";
    case ReplugStatus::no_device:
        return "no-device";
    case ReplugStatus::failed:
        return "failed";
    }
    return "?";
}

ReplugResult replug(Client &c, const ReplugOptions &o)
{
    auto log = [&](const std::string &s) {
        if (o.log)
            o.log(s);
    };
    auto fail = [&](const std::string &what, const Reply &r) {
        ReplugResult res;
        res.status = c.broken() ? ReplugStatus::qemu_gone : ReplugStatus::failed;
        res.message =
            what + ": " + r.desc + (r.error_class.empty() ? "" : " (" + r.error_class + ")");
        return res;
    };

    DeviceProps p;
    Reply r = read_device(c, o.device, p);
    bool resume = !r.ok && r.error_class == "DeviceNotFound" && !o.known.tag.empty();
    if (resume) {
        // Our own re-plug was cut short after device_del: finish it.
        p = o.known;
        log("device " + o.device +
            " is gone, and a re-plug was cut short: adding it back as it "
            "was (tag=" +
            p.tag + ")");
    } else if (!r.ok) {
        if (r.error_class == "DeviceNotFound")
            return {ReplugStatus::no_device, "no device '" + o.device +
                                                 "' in the VM (removed by its manager?): "
                                                 "nothing to re-plug"};
        return fail("reading device '" + o.device + "'", r);
    } else {
        log("device " + o.device + ": tag=" + p.tag + " chardev=" + p.chardev + " bus=" + p.bus +
            " addr=" + p.addr + " num-request-queues=" + std::to_string(p.num_request_queues) +
            " queue-size=" + std::to_string(p.queue_size));
        if (o.on_props)
            o.on_props(p);
        log("device_del " + o.device);
        r = c.execute("device_del", "{\"id\":" + json::quote(o.device) + "}");
        if (!r.ok && !c.broken() && r.error_class == "GenericError") {
            // A predecessor killed after its own device_del: the unplug is
            // under way ("already in the process of unplug") and its
            // DEVICE_DELETED may come, or have come, before we listen.
            // Watch the device itself go instead.
            log("device_del " + o.device + ": " + r.desc + "; waiting for it to go");
            auto until = std::chrono::steady_clock::now() +
                         std::chrono::milliseconds(o.delete_timeout_ms);
            for (;;) {
                Reply q = c.execute("qom-get", qom_args(o.device, "type"));
                if (!q.ok && q.error_class == "DeviceNotFound")
                    break;
                if (c.broken())
                    return fail("device_del " + o.device, q);
                if (std::chrono::steady_clock::now() > until)
                    return fail("device_del " + o.device, r);
                std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
            resume = true;
        } else if (!r.ok) {
            return fail("device_del " + o.device, r);
        }
    }
    auto t0 = std::chrono::steady_clock::now();
    bool deleted = resume || c.wait_event(
                                 "DEVICE_DELETED",
                                 [&](const json::Value &d) {
                                     const std::string *dev = d.get_string("device");
                                     return dev && *dev == o.device;
                                 },
                                 o.delete_timeout_ms);
    if (!deleted) {
        ReplugResult res;
        res.status = c.broken() ? ReplugStatus::qemu_gone : ReplugStatus::failed;
        res.message = "no DEVICE_DELETED for " + o.device + " within " +
                      std::to_string(o.delete_timeout_ms) +
                      " ms: the guest did not release the device (a guest without the holdfast "
                      "virtiofs patches waits forever in virtio_fs_remove for the requests "
                      "the dead back-end had)";
        return res;
    }
    if (!resume)
        log("DEVICE_DELETED " + o.device + " after " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - t0)
                               .count()) +
            " ms");

    if (!p.chardev.empty()) {
        log("chardev-remove " + p.chardev);
        r = c.execute("chardev-remove", "{\"id\":" + json::quote(p.chardev) + "}");
        if (!r.ok && c.broken())
            return fail("chardev-remove " + p.chardev, r);
        if (!r.ok)
            log("chardev-remove " + p.chardev + " failed (" + r.desc + "); going on");
    }

    // A re-plug cut short may also have added its new chardev before it
    // died: connected to our socket but used by no device, it would only
    // hold that id (and a connection the server waits on).  The device is
    // gone, so none of our chardevs is in use: remove them all.
    if (resume && o.chardev_id.empty()) {
        r = c.execute("query-chardev", "");
        if (!r.ok && c.broken())
            return fail("query-chardev", r);
        const std::string ours = o.device + "-hf";
        for (const json::Value &cd : r.ok && r.ret.is_array() ? r.ret.array
                                                              : std::vector<json::Value>{}) {
            const std::string *label = cd.is_object() ? cd.get_string("label") : nullptr;
            if (!label || label->compare(0, ours.size(), ours) != 0 || *label == p.chardev)
                continue;
            log("chardev-remove " + *label + " (left by the re-plug cut short)");
            Reply rr = c.execute("chardev-remove", "{\"id\":" + json::quote(*label) + "}");
            if (!rr.ok && c.broken())
                return fail("chardev-remove " + *label, rr);
        }
    }

    // A fresh id each time: the old one may still be in use if its removal
    // failed.
    std::string chardev;
    for (unsigned n = 1; n <= 16; n++) {
        chardev = !o.chardev_id.empty() ? o.chardev_id : o.device + "-hf" + std::to_string(n);
        if (chardev == p.chardev)
            continue;
        log("chardev-add " + chardev + " -> unix:" + o.socket_path);
        r = c.execute("chardev-add",
                      "{\"id\":" + json::quote(chardev) +
                          ",\"backend\":{\"type\":\"socket\",\"data\":{\"addr\":{\"type\":"
                          "\"unix\",\"data\":{\"path\":" +
                          json::quote(o.socket_path) + "}},\"server\":false}}}");
        if (r.ok || !o.chardev_id.empty() || c.broken() ||
            (r.desc.find("duplicate") == std::string::npos &&
             r.desc.find("already exists") == std::string::npos))
            break;
    }
    if (!r.ok)
        return fail("chardev-add " + chardev, r);

    log("device_add vhost-user-fs-pci id=" + o.device + " chardev=" + chardev + " tag=" + p.tag);
    r = c.execute("device_add", device_add_args(o.device, chardev, p));
    if (!r.ok) {
        ReplugResult res = fail("device_add " + o.device, r);
        if (!c.broken())
            c.execute("chardev-remove", "{\"id\":" + json::quote(chardev) + "}");
        return res;
    }
    return {ReplugStatus::ok,
            "device " + o.device + " (tag " + p.tag + ") re-plugged on chardev " + chardev};
}

ReplugResult replug_at(const std::string &qmp_path, const ReplugOptions &o)
{
    SocketChannel ch;
    bool refused = false;
    std::string e = ch.connect(qmp_path, refused);
    if (!e.empty())
        return {refused ? ReplugStatus::qemu_gone : ReplugStatus::failed, e};
    Client c(ch);
    e = c.handshake();
    if (!e.empty())
        return {c.broken() ? ReplugStatus::qemu_gone : ReplugStatus::failed, "QMP: " + e};
    return replug(c, o);
}

} // namespace holdfast::vmm
