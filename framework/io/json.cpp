// Strict recursive-descent JSON parser (RFC 8259 subset: no comments, no trailing commas) and writer.
#include "json.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>

#include "../error.h"

namespace dermis::json {

namespace {
constexpr int kMaxDepth = 64;

struct Parser {
  const std::string& s;
  const std::string& src;
  size_t i = 0;

  [[noreturn]] void fail(const std::string& what) const {
    DERMIS_FAIL("{}: invalid JSON at byte {}: {}", src, i, what);
  }
  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) ++i;
  }
  char peek() {
    if (i >= s.size()) fail("unexpected end of input");
    return s[i];
  }
  void expect(char c) {
    if (peek() != c) fail(fmt::format("expected '{}'", c));
    ++i;
  }
  Value value(int depth) {
    if (depth > kMaxDepth) fail("nesting too deep");
    ws();
    const char c = peek();
    if (c == '{') return object(depth);
    if (c == '[') return array(depth);
    if (c == '"') return Value(str());
    if (c == 't' && s.compare(i, 4, "true") == 0) return i += 4, Value(true);
    if (c == 'f' && s.compare(i, 5, "false") == 0) return i += 5, Value(false);
    if (c == 'n' && s.compare(i, 4, "null") == 0) return i += 4, Value(nullptr);
    if (c == '-' || (c >= '0' && c <= '9')) return Value(num());
    fail(fmt::format("unexpected character '{}'", c));
  }
  Object object(int depth) {
    expect('{');
    Object o;
    ws();
    if (peek() == '}') return ++i, o;
    while (true) {
      ws();
      std::string k = str();
      ws();
      expect(':');
      Value v = value(depth + 1);
      if (!o.emplace(std::move(k), std::move(v)).second) fail("duplicate key");
      ws();
      if (peek() == ',') {
        ++i;
        continue;
      }
      expect('}');
      return o;
    }
  }
  Array array(int depth) {
    expect('[');
    Array a;
    ws();
    if (peek() == ']') return ++i, a;
    while (true) {
      a.push_back(value(depth + 1));
      ws();
      if (peek() == ',') {
        ++i;
        continue;
      }
      expect(']');
      return a;
    }
  }
  unsigned hex4() {
    if (i + 4 > s.size()) fail("truncated \\u escape");
    unsigned u = 0;
    for (int k = 0; k < 4; ++k) {
      const char h = s[i++];
      u <<= 4;
      if (h >= '0' && h <= '9') u |= h - '0';
      else if (h >= 'a' && h <= 'f') u |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F') u |= h - 'A' + 10;
      else fail("bad hex digit in \\u escape");
    }
    return u;
  }
  static void utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) out += static_cast<char>(cp);
    else if (cp < 0x800) out += static_cast<char>(0xC0 | (cp >> 6)), out += static_cast<char>(0x80 | (cp & 0x3F));
    else if (cp < 0x10000)
      out += static_cast<char>(0xE0 | (cp >> 12)), out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
          out += static_cast<char>(0x80 | (cp & 0x3F));
    else
      out += static_cast<char>(0xF0 | (cp >> 18)), out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F)),
          out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)), out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  std::string str() {
    expect('"');
    std::string out;
    while (true) {
      const char c = peek();
      ++i;
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      const char e = peek();
      ++i;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          unsigned cp = hex4();
          if (cp >= 0xD800 && cp < 0xDC00) {
            if (s.compare(i, 2, "\\u") != 0) fail("unpaired surrogate");
            i += 2;
            const unsigned lo = hex4();
            if (lo < 0xDC00 || lo >= 0xE000) fail("bad low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          utf8(out, cp);
          break;
        }
        default: fail("bad escape");
      }
    }
  }
  double num() {
    const size_t start = i;
    if (s[i] == '-') ++i;
    if (i >= s.size() || !(s[i] >= '0' && s[i] <= '9')) fail("bad number");
    while (i < s.size() && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == 'e' || s[i] == 'E' ||
                            s[i] == '+' || s[i] == '-'))
      ++i;
    const std::string t = s.substr(start, i - start);
    char* end = nullptr;
    const double d = std::strtod(t.c_str(), &end);
    if (end != t.c_str() + t.size() || !std::isfinite(d)) fail("bad number '" + t + "'");
    return d;
  }
};

const char* type_name(const Value& v) {
  static const char* names[] = {"null", "boolean", "number", "string", "array", "object"};
  return names[v.v.index()];
}
}  // namespace

double Value::number(const char* what) const {
  DERMIS_CHECK(is_number(), "{} must be a number, got {}", what, type_name(*this));
  return std::get<double>(v);
}
int64_t Value::integer(const char* what) const {
  const double d = number(what);
  DERMIS_CHECK(d == std::floor(d) && std::abs(d) <= 9007199254740992.0, "{} must be an integer, got {}", what, d);
  return static_cast<int64_t>(d);
}
const std::string& Value::string(const char* what) const {
  DERMIS_CHECK(is_string(), "{} must be a string, got {}", what, type_name(*this));
  return std::get<std::string>(v);
}
const Array& Value::array(const char* what) const {
  DERMIS_CHECK(is_array(), "{} must be an array, got {}", what, type_name(*this));
  return std::get<Array>(v);
}
const Object& Value::object(const char* what) const {
  DERMIS_CHECK(is_object(), "{} must be an object, got {}", what, type_name(*this));
  return std::get<Object>(v);
}
bool Value::boolean(const char* what) const {
  DERMIS_CHECK(is_bool(), "{} must be true or false, got {}", what, type_name(*this));
  return std::get<bool>(v);
}
const Value* Value::find(const std::string& key) const {
  if (!is_object()) return nullptr;
  const auto& o = std::get<Object>(v);
  auto it = o.find(key);
  return it == o.end() ? nullptr : &it->second;
}

const Value& Value::at(const std::string& key) const {
  DERMIS_CHECK(is_object(), "expected an object holding '{}'", key);
  const Value* x = find(key);
  DERMIS_CHECK(x != nullptr, "'{}' is missing", key);
  return *x;
}

Value parse(const std::string& text, const std::string& source) {
  Parser p{text, source};
  Value v = p.value(0);
  p.ws();
  if (p.i != text.size()) p.fail("trailing characters after the JSON value");
  return v;
}

std::string quote(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20) o += fmt::format("\\u{:04x}", c);
        else o += static_cast<char>(c);
    }
  }
  return o + "\"";
}

std::string dump(const Value& v) {
  switch (v.v.index()) {
    case 0: return "null";
    case 1: return std::get<bool>(v.v) ? "true" : "false";
    case 2: {
      const double d = std::get<double>(v.v);
      if (!std::isfinite(d)) return "null";
      if (d == std::floor(d) && std::abs(d) < 1e15) return fmt::format("{}", static_cast<int64_t>(d));
      return fmt::format("{:.9g}", d);
    }
    case 3: return quote(std::get<std::string>(v.v));
    case 4: {
      std::string o = "[";
      bool first = true;
      for (auto& e : std::get<Array>(v.v)) {
        if (!first) o += ',';
        o += dump(e);
        first = false;
      }
      return o + "]";
    }
    default: {
      std::string o = "{";
      bool first = true;
      for (auto& [k, e] : std::get<Object>(v.v)) {
        if (!first) o += ',';
        o += quote(k);
        o += ':';
        o += dump(e);
        first = false;
      }
      return o + "}";
    }
  }
}

}  // namespace dermis::json
