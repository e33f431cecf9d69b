// SPDX-License-Identifier: GPL-2.0
#include "vmm/json.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace holdfast::vmm::json {

const Value *Value::get(std::string_view key) const
{
    if (type != Type::object)
        return nullptr;
    for (const auto &[k, v] : object)
        if (k == key)
            return &v;
    return nullptr;
}

const std::string *Value::get_string(std::string_view key) const
{
    const Value *v = get(key);
    return v && v->is_string() ? &v->string : nullptr;
}

namespace {

class Parser {
  public:
    explicit Parser(std::string_view t) : t_(t) {}

    std::string run(Value &out)
    {
        skip_ws();
        if (!value(out, 0))
            return err_;
        skip_ws();
        if (pos_ != t_.size())
            return fail("trailing characters");
        return "";
    }

  private:
    bool fail_b(const char *what)
    {
        fail(what);
        return false;
    }
    std::string fail(const char *what)
    {
        if (err_.empty())
            err_ = std::string(what) + " at offset " + std::to_string(pos_);
        return err_;
    }
    bool at_end() const { return pos_ >= t_.size(); }
    char peek() const { return at_end() ? '\0' : t_[pos_]; }
    void skip_ws()
    {
        while (!at_end() &&
               (t_[pos_] == ' ' || t_[pos_] == '\t' || t_[pos_] == '\n' || t_[pos_] == '\r'))
            pos_++;
    }
    bool literal(std::string_view word)
    {
        if (t_.substr(pos_, word.size()) != word)
            return fail_b("bad literal");
        pos_ += word.size();
        return true;
    }

    bool value(Value &v, size_t depth)
    {
        if (depth >= kMaxDepth)
            return fail_b("nested too deeply");
        switch (peek()) {
        case '{':
            return object(v, depth);
        case '[':
            return array(v, depth);
        case '"':
            v.type = Value::Type::string;
            return string(v.string);
        case 't':
            v.type = Value::Type::boolean;
            v.boolean = true;
            return literal("true");
        case 'f':
            v.type = Value::Type::boolean;
            v.boolean = false;
            return literal("false");
        case 'n':
            v.type = Value::Type::null;
            return literal("null");
        default:
            return number(v);
        }
    }

    bool object(Value &v, size_t depth)
    {
        v.type = Value::Type::object;
        pos_++; // '{'
        skip_ws();
        if (peek() == '}') {
            pos_++;
            return true;
        }
        for (;;) {
            skip_ws();
            if (peek() != '"')
                return fail_b("expected a member name");
            std::string key;
            if (!string(key))
                return false;
            skip_ws();
            if (peek() != ':')
                return fail_b("expected ':'");
            pos_++;
            skip_ws();
            Value member;
            if (!value(member, depth + 1))
                return false;
            v.object.emplace_back(std::move(key), std::move(member));
            skip_ws();
            if (peek() == ',') {
                pos_++;
                continue;
            }
            if (peek() == '}') {
                pos_++;
                return true;
            }
            return fail_b("expected ',' or '}'");
        }
    }

    bool array(Value &v, size_t depth)
    {
        v.type = Value::Type::array;
        pos_++; // '['
        skip_ws();
        if (peek() == ']') {
            pos_++;
            return true;
        }
        for (;;) {
            skip_ws();
            Value item;
            if (!value(item, depth + 1))
                return false;
            v.array.push_back(std::move(item));
            skip_ws();
            if (peek() == ',') {
                pos_++;
                continue;
            }
            if (peek() == ']') {
                pos_++;
                return true;
            }
            return fail_b("expected ',' or ']'");
        }
    }

    bool hex4(uint32_t &cp)
    {
        if (t_.size() - pos_ < 4)
            return fail_b("truncated \\u escape");
        cp = 0;
        for (int i = 0; i < 4; i++) {
            char c = t_[pos_++];
            cp <<= 4;
            if (c >= '0' && c <= '9')
                cp |= uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f')
                cp |= uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F')
                cp |= uint32_t(c - 'A' + 10);
            else
                return fail_b("bad \\u escape");
        }
        return true;
    }

    static void utf8(uint32_t cp, std::string &out)
    {
        if (cp < 0x80) {
            out += char(cp);
        } else if (cp < 0x800) {
            out += char(0xc0 | (cp >> 6));
            out += char(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out += char(0xe0 | (cp >> 12));
            out += char(0x80 | ((cp >> 6) & 0x3f));
            out += char(0x80 | (cp & 0x3f));
        } else {
            out += char(0xf0 | (cp >> 18));
            out += char(0x80 | ((cp >> 12) & 0x3f));
            out += char(0x80 | ((cp >> 6) & 0x3f));
            out += char(0x80 | (cp & 0x3f));
        }
    }

    bool string(std::string &out)
    {
        pos_++; // '"'
        for (;;) {
            if (at_end())
                return fail_b("unterminated string");
            char c = t_[pos_++];
            if (c == '"')
                return true;
            if (static_cast<unsigned char>(c) < 0x20)
                return fail_b("control character in string");
            if (c != '\\') {
                out += c;
                continue;
            }
            if (at_end())
                return fail_b("unterminated escape");
            char e = t_[pos_++];
            switch (e) {
            case '"':
            case '\\':
            case '/':
                out += e;
                break;
            case 'b':
                out += '\b';
                break;
            case 'f':
                out += '\f';
                break;
            case 'n':
                out += '\n';
                break;
            case 'r':
                out += '\r';
                break;
            case 't':
                out += '\t';
                break;
            case 'u': {
                uint32_t cp;
                if (!hex4(cp))
                    return false;
                if (cp >= 0xd800 && cp < 0xdc00) {
                    // A high surrogate must be followed by a low one.
                    uint32_t lo;
                    if (t_.substr(pos_, 2) != "\\u")
                        return fail_b("lone surrogate");
                    pos_ += 2;
                    if (!hex4(lo))
                        return false;
                    if (lo < 0xdc00 || lo >= 0xe000)
                        return fail_b("bad surrogate pair");
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                } else if (cp >= 0xdc00 && cp < 0xe000) {
                    return fail_b("lone surrogate");
                }
                utf8(cp, out);
                break;
            }
            default:
                return fail_b("bad escape");
            }
        }
    }

    bool number(Value &v)
    {
        size_t start = pos_;
        bool integral = true;
        if (peek() == '-')
            pos_++;
        if (!(peek() >= '0' && peek() <= '9'))
            return fail_b("unexpected character");
        if (peek() == '0') {
            pos_++;
        } else {
            while (peek() >= '0' && peek() <= '9')
                pos_++;
        }
        if (peek() == '.') {
            integral = false;
            pos_++;
            if (!(peek() >= '0' && peek() <= '9'))
                return fail_b("bad number");
            while (peek() >= '0' && peek() <= '9')
                pos_++;
        }
        if (peek() == 'e' || peek() == 'E') {
            integral = false;
            pos_++;
            if (peek() == '+' || peek() == '-')
                pos_++;
            if (!(peek() >= '0' && peek() <= '9'))
                return fail_b("bad number");
            while (peek() >= '0' && peek() <= '9')
                pos_++;
        }
        // strtod/strtoll need a terminated copy; a number longer than any
        // sane one is refused rather than copied.
        size_t len = pos_ - start;
        if (len > 64)
            return fail_b("number too long");
        char buf[65];
        std::memcpy(buf, t_.data() + start, len);
        buf[len] = 0;
        v.type = Value::Type::number;
        v.number = strtod(buf, nullptr);
        v.integral = false;
        if (integral) {
            errno = 0;
            long long i = strtoll(buf, nullptr, 10);
            if (errno == 0) {
                v.integral = true;
                v.integer = i;
            }
        }
        return true;
    }

    std::string_view t_;
    size_t pos_ = 0;
    std::string err_;
};

} // namespace

std::string parse(std::string_view text, Value &out)
{
    out = Value{};
    return Parser(text).run(out);
}

std::string quote(std::string_view s)
{
    std::string out = "\"";
    for (char c : s) {
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\r':
            out += "\\r";
            break;
        case '\t':
            out += "\\t";
            break;
        default:
            if (static_cast<unsigned char>(c) < 0x20) {
                char b[8];
                snprintf(b, sizeof(b), "\\u%04x", unsigned(static_cast<unsigned char>(c)));
                out += b;
            } else {
                out += c;
            }
        }
    }
    return out + "\"";
}

} // namespace holdfast::vmm::json
