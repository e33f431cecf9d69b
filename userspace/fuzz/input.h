// SPDX-License-Identifier: GPL-2.0
// A cursor over a fuzz input: little-endian integers and byte runs, zero
// once the input runs out (so every prefix of an input is an input too).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace holdfast::fuzz {

class Input {
  public:
    Input(const uint8_t *data, size_t size) : p_(data), left_(size) {}

    bool empty() const { return left_ == 0; }
    size_t left() const { return left_; }

    template <class T> T get()
    {
        T v{};
        size_t n = sizeof(T) < left_ ? sizeof(T) : left_;
        std::memcpy(&v, p_, n);
        p_ += n;
        left_ -= n;
        return v;
    }
    uint8_t u8() { return get<uint8_t>(); }
    uint16_t u16() { return get<uint16_t>(); }
    uint32_t u32() { return get<uint32_t>(); }
    uint64_t u64() { return get<uint64_t>(); }

    // Up to `n` bytes (fewer if the input ends); returns how many.
    size_t bytes(size_t n, const uint8_t *&out)
    {
        if (n > left_)
            n = left_;
        out = p_;
        p_ += n;
        left_ -= n;
        return n;
    }

  private:
    const uint8_t *p_;
    size_t left_;
};

} // namespace holdfast::fuzz
