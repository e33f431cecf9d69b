// SPDX-License-Identifier: GPL-2.0
// A small QMP client (QEMU Machine Protocol: one JSON object per line over
// a UNIX socket), and the one thing holdfast asks of QEMU: replace a dead
// vhost-user-fs-pci device by an identical one connected to a back-end
// that is listening again (Documentation/vhost-user.rst, "Reconnect").
//
// The I/O sits behind Channel so that the protocol logic runs against
// canned replies in the unit tests.
#pragma once

#include "util/fd.h"
#include "vmm/json.h"

#include <cstdint>
#include <deque>
#include <functional>
#include <string>

namespace holdfast::vmm {

class Channel {
  public:
    virtual ~Channel() = default;
    // Sends one line (the newline is added).  False with `err` set on failure.
    virtual bool write_line(const std::string &line, std::string &err) = 0;
    // Reads one line into `line` (without its newline).  Returns 1, or 0 on
    // timeout, or -1 with `err` set (EOF, error, a line over the limit).
    virtual int read_line(std::string &line, int timeout_ms, std::string &err) = 0;
};

// A connected UNIX stream socket.
class SocketChannel final : public Channel {
  public:
    static constexpr size_t kMaxLine = 1 << 20; // QMP replies we read are small
    // Connects to `path`.  Returns "" or what failed; `refused` is set when
    // nobody listens there (ENOENT, ECONNREFUSED): QEMU is gone.
    std::string connect(const std::string &path, bool &refused);
    bool write_line(const std::string &line, std::string &err) override;
    int read_line(std::string &line, int timeout_ms, std::string &err) override;

  private:
    Fd fd_;
    std::string buf_;
};

struct Reply {
    bool ok = false;
    json::Value ret;         // "return" (when ok)
    std::string error_class; // "error": {"class", "desc"} (or our own: "Timeout", "Protocol")
    std::string desc;
};

class Client {
  public:
    explicit Client(Channel &ch, int timeout_ms = 5000) : ch_(ch), timeout_ms_(timeout_ms) {}

    // Reads the greeting and leaves capabilities negotiation mode.
    // Returns "" or what went wrong.
    std::string handshake();
    // Runs one command (`args_json`: an object's text, or "").  Events
    // that arrive meanwhile are kept for wait_event().
    Reply execute(const std::string &command, const std::string &args_json = "");
    // Waits up to `timeout_ms` for an event named `name` whose "data"
    // satisfies `match`; consumes it.  False on timeout or a dead channel.
    bool wait_event(const std::string &name, const std::function<bool(const json::Value &)> &match,
                    int timeout_ms);
    // True once the channel failed (EOF, error, garbage): QEMU went away.
    bool broken() const { return broken_; }

  private:
    // Reads one message; events go to events_.  1, 0 (timeout), -1.
    int read_message(json::Value &msg, int timeout_ms, std::string &err);

    Channel &ch_;
    int timeout_ms_;
    uint64_t next_id_ = 1;
    bool broken_ = false;
    std::deque<json::Value> events_;
};

// What a vhost-user-fs-pci device is made of, read back before it goes.
struct DeviceProps {
    std::string tag;
    std::string chardev;
    std::string bus;  // the bus id ("pci.0"), from parent_bus
    std::string addr; // "slot.fn", from addr (devfn)
    int64_t num_request_queues = -1;
    int64_t queue_size = -1;
    // The DAX window (our patched QEMU's cache-size); -1: QEMU has no such
    // property.  A parked guest takes a device over only with a window of
    // the same size.
    int64_t cache_size = -1;
};

// DeviceProps as a JSON object, and back (false if `text` is not one).
std::string props_to_json(const DeviceProps &p);
bool props_from_json(const std::string &text, DeviceProps &out);

// Reads the properties of /machine/peripheral/<id>.  Returns the failed
// reply (its class is "DeviceNotFound" when there is no such device), or
// an ok one.
Reply read_device(Client &c, const std::string &id, DeviceProps &out);

// The device_add arguments that recreate `p` as `id` on `chardev`.
std::string device_add_args(const std::string &id, const std::string &chardev,
                            const DeviceProps &p);

enum class ReplugStatus { ok, qemu_gone, no_device, failed };
const char *replug_status_name(ReplugStatus s);

struct ReplugResult {
    ReplugStatus status = ReplugStatus::failed;
    std::string message;
};

struct ReplugOptions {
    std::string device;      // qdev id of the vhost-user-fs-pci device
    std::string socket_path; // where the new chardev connects (our socket)
    std::string chardev_id;  // id for the new chardev ("" = <device>-hf<n>)
    int delete_timeout_ms = 10000;
    std::function<void(const std::string &)> log; // one line per step
    // Called with the device's properties once read, before device_del:
    // a caller that may die mid-way keeps them (see `known`).
    std::function<void(const DeviceProps &)> on_props;
    // The properties a re-plug that was cut short (between device_del and
    // device_add) had read: if the device is gone, it is added back from
    // these.  Empty tag: none.
    DeviceProps known;
};

// device_del, wait for DEVICE_DELETED, chardev-remove, chardev-add,
// device_add with the same properties.  `c` has done its handshake.
ReplugResult replug(Client &c, const ReplugOptions &o);

// Connects to `qmp_path`, handshakes, and replugs.
ReplugResult replug_at(const std::string &qmp_path, const ReplugOptions &o);

} // namespace holdfast::vmm
