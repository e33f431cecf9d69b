// SPDX-License-Identifier: GPL-2.0
// The control socket: holdfastctl asks, holdfastd answers.  One request per
// connection: a command line in, a reply out.  The socket path is derived
// from the mountpoint so `holdfastctl status MNT` finds its server.
#pragma once

#include "util/fd.h"

#include <functional>
#include <string>
#include <thread>

namespace holdfast::control {

// Where the control socket of the server for `mountpoint` lives.
std::string socket_path(const std::string &mountpoint);

class Server {
  public:
    using Handler = std::function<std::string(const std::string &command)>;

    // Binds the socket (replacing a stale one); throws std::runtime_error.
    Server(std::string path, Handler h);
    ~Server();

  private:
    void loop();
    std::string path_;
    Handler handler_;
    Fd listen_;
    Fd wake_[2];
    std::thread thread_;
};

// Sends `command`, returns the reply; throws std::runtime_error.
std::string request(const std::string &path, const std::string &command);

// JSON string escaping for the replies.
std::string json_escape(const std::string &s);

} // namespace holdfast::control
