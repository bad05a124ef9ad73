#pragma once
// A small JSON reader for the ML-KEM test vectors (NIST ACVP, Wycheproof, CCTV): objects,
// arrays, strings, numbers, true/false/null. Test code only: throws std::runtime_error on
// malformed input, which fails the test that loaded the file.
#include <cstddef>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace keyrail::test {

class json {
public:
    enum class kind { null, boolean, number, string, array, object };

    static json parse(std::string_view text) {
        std::size_t pos = 0;
        json v = parse_value(text, pos);
        skip_space(text, pos);
        if (pos != text.size()) {
            throw std::runtime_error("json: trailing data");
        }
        return v;
    }

    [[nodiscard]] kind type() const noexcept { return _kind; }
    [[nodiscard]] bool has(const std::string& key) const { return _object.count(key) != 0; }
    [[nodiscard]] const json& operator[](const std::string& key) const {
        auto it = _object.find(key);
        if (it == _object.end()) {
            throw std::runtime_error("json: missing key " + key);
        }
        return it->second;
    }
    [[nodiscard]] const std::vector<json>& items() const { return _array; }
    [[nodiscard]] const std::string& str() const {
        if (_kind != kind::string) {
            throw std::runtime_error("json: not a string");
        }
        return _string;
    }
    [[nodiscard]] double num() const { return _number; }
    [[nodiscard]] bool boolean() const { return _bool; }

private:
    static void skip_space(std::string_view t, std::size_t& p) {
        while (p < t.size() && (t[p] == ' ' || t[p] == '\n' || t[p] == '\r' || t[p] == '\t')) {
            ++p;
        }
    }
    static void expect(std::string_view t, std::size_t& p, std::string_view word) {
        if (t.substr(p, word.size()) != word) {
            throw std::runtime_error("json: unexpected token");
        }
        p += word.size();
    }
    static std::string parse_string(std::string_view t, std::size_t& p) {
        expect(t, p, "\"");
        std::string out;
        while (p < t.size() && t[p] != '"') {
            char c = t[p++];
            if (c == '\\') {
                if (p >= t.size()) {
                    break;
                }
                char e = t[p++];
                switch (e) {
                case 'n': out += '\n'; break;
                case 't': out += '\t'; break;
                case 'r': out += '\r'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'u': {
                    // Only the code point's presence matters to the tests: keep it as UTF-8.
                    const unsigned cp = static_cast<unsigned>(
                        std::stoul(std::string(t.substr(p, 4)), nullptr, 16));
                    p += 4;
                    if (cp < 0x80) {
                        out += static_cast<char>(cp);
                    } else if (cp < 0x800) {
                        out += static_cast<char>(0xc0 | (cp >> 6));
                        out += static_cast<char>(0x80 | (cp & 0x3f));
                    } else {
                        out += static_cast<char>(0xe0 | (cp >> 12));
                        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
                        out += static_cast<char>(0x80 | (cp & 0x3f));
                    }
                    break;
                }
                default: out += e; break;
                }
            } else {
                out += c;
            }
        }
        expect(t, p, "\"");
        return out;
    }
    static json parse_value(std::string_view t, std::size_t& p) {
        skip_space(t, p);
        if (p >= t.size()) {
            throw std::runtime_error("json: unexpected end");
        }
        json v;
        const char c = t[p];
        if (c == '{') {
            v._kind = kind::object;
            ++p;
            skip_space(t, p);
            if (p < t.size() && t[p] == '}') {
                ++p;
                return v;
            }
            for (;;) {
                skip_space(t, p);
                std::string key = parse_string(t, p);
                skip_space(t, p);
                expect(t, p, ":");
                v._object.emplace(std::move(key), parse_value(t, p));
                skip_space(t, p);
                if (p < t.size() && t[p] == ',') {
                    ++p;
                    continue;
                }
                expect(t, p, "}");
                return v;
            }
        }
        if (c == '[') {
            v._kind = kind::array;
            ++p;
            skip_space(t, p);
            if (p < t.size() && t[p] == ']') {
                ++p;
                return v;
            }
            for (;;) {
                v._array.push_back(parse_value(t, p));
                skip_space(t, p);
                if (p < t.size() && t[p] == ',') {
                    ++p;
                    continue;
                }
                expect(t, p, "]");
                return v;
            }
        }
        if (c == '"') {
            v._kind = kind::string;
            v._string = parse_string(t, p);
            return v;
        }
        if (t.substr(p, 4) == "true") {
            p += 4;
            v._kind = kind::boolean;
            v._bool = true;
            return v;
        }
        if (t.substr(p, 5) == "false") {
            p += 5;
            v._kind = kind::boolean;
            return v;
        }
        if (t.substr(p, 4) == "null") {
            p += 4;
            return v;
        }
        std::size_t end = p;
        while (end < t.size() && std::string_view("+-0123456789.eE").find(t[end]) !=
                                     std::string_view::npos) {
            ++end;
        }
        if (end == p) {
            throw std::runtime_error("json: unexpected character");
        }
        v._kind = kind::number;
        v._number = std::stod(std::string(t.substr(p, end - p)));
        p = end;
        return v;
    }

    kind _kind = kind::null;
    bool _bool = false;
    double _number = 0;
    std::string _string;
    std::vector<json> _array;
    std::map<std::string, json> _object;
};

} // namespace keyrail::test
