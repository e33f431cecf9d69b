// SPDX-License-Identifier: GPL-2.0
// Just enough JSON for QMP: a parser into a small value tree and string
// quoting for the commands we write.  QMP replies come from a process we
// do not control, so the parser is bounded: input size is the caller's
// (one line), nesting depth is capped, every read is checked against the
// end of the text, and numbers are parsed from a bounded copy.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace holdfast::vmm::json {

struct Value {
    enum class Type { null, boolean, number, string, array, object };
    Type type = Type::null;
    bool boolean = false;
    double number = 0;
    bool integral = false; // the number had no fraction or exponent
    int64_t integer = 0;   // its value, when integral and in range
    std::string string;
    std::vector<Value> array;
    std::vector<std::pair<std::string, Value>> object; // in text order

    bool is_null() const { return type == Type::null; }
    bool is_string() const { return type == Type::string; }
    bool is_object() const { return type == Type::object; }
    bool is_array() const { return type == Type::array; }
    bool is_integer() const { return type == Type::number && integral; }
    // The member `key` of an object (the first, if repeated), or nullptr.
    const Value *get(std::string_view key) const;
    // get(key) if it is a string, else nullptr.
    const std::string *get_string(std::string_view key) const;
};

constexpr size_t kMaxDepth = 64;

// Parses exactly one value (whitespace around it allowed).  Returns "" on
// success, else what is wrong and where.
std::string parse(std::string_view text, Value &out);

// `s` as a JSON string literal, quotes included.  Bytes below 0x20, '"'
// and '\' are escaped; everything else is copied (UTF-8 passes through).
std::string quote(std::string_view s);

} // namespace holdfast::vmm::json
