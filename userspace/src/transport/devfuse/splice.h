// SPDX-License-Identifier: GPL-2.0
// READ replies spliced from the backing file to /dev/fuse.
//
// A reply built in a buffer costs two copies of the data: page cache to
// our buffer (pread), buffer to the request's pages (writev).  Spliced
// through a pipe, the page cache's pages are referenced, not copied, until
// /dev/fuse copies them once into the request.  The header has to come
// first on the wire but its length is known only once the data is in a
// pipe (a short read at EOF), so the data goes into one pipe, the header
// into another, and the data is moved behind it (pages change pipes, no
// bytes are copied).  Four system calls instead of two: worth it for big
// reads only.
#pragma once

#include "fuse/backend_io.h"
#include "util/fd.h"

#include <cstddef>
#include <cstdint>
#include <functional>

namespace holdfast::devfuse {

class SpliceReply {
  public:
    // Reads smaller than this are cheaper through a buffer.
    static constexpr size_t kMinSize = 64 * 1024;

    // Pipes for replies of up to `max_payload` bytes; usable() says whether
    // they could be made that big.
    explicit SpliceReply(size_t max_payload);

    bool usable() const { return cap_ != 0; }
    bool wants(const fuse::BackendIo &io) const;

    enum class Sent { yes, fallback, failed, gone };
    // Moves io's data into a pipe, calls `done(bytes)` (the engine
    // completes the request with that result), then sends header and data
    // to `devfd` in one splice.
    //   fallback: nothing was done, `io` is intact: carry it out the
    //             ordinary way (no splice for this file, or a read error,
    //             which the ordinary path then reports);
    //   failed:   completed but not sent: answer EIO the ordinary way;
    //   gone:     the connection is gone (ENODEV).
    Sent send(int devfd, uint64_t unique, fuse::BackendIo &io,
              const std::function<void(uint32_t)> &done);

  private:
    bool make_pipes();
    void reset(); // a failure may leave bytes in a pipe: start afresh

    size_t max_payload_;
    size_t cap_ = 0;   // bytes of payload a reply may carry
    size_t slots_ = 0; // pages of it the pipes hold (the message pipe less the header)
    bool broken_ = false;
    Fd data_r_, data_w_, msg_r_, msg_w_;
};

} // namespace holdfast::devfuse
