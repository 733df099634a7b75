// A small JSON value type with a strict parser and a writer (safetensors headers, metrics logs,
// tool output). Numbers are doubles; integers up to 2^53 round-trip exactly.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace dermis::json {

struct Value;
using Object = std::map<std::string, Value>;
using Array = std::vector<Value>;

struct Value {
  std::variant<std::nullptr_t, bool, double, std::string, Array, Object> v = nullptr;

  Value() = default;
  Value(std::nullptr_t) {}
  Value(bool b) : v(b) {}
  Value(double d) : v(d) {}
  Value(int d) : v(static_cast<double>(d)) {}
  Value(int64_t d) : v(static_cast<double>(d)) {}
  Value(size_t d) : v(static_cast<double>(d)) {}
  Value(const char* s) : v(std::string(s)) {}
  Value(std::string s) : v(std::move(s)) {}
  Value(Array a) : v(std::move(a)) {}
  Value(Object o) : v(std::move(o)) {}

  bool is_null() const { return std::holds_alternative<std::nullptr_t>(v); }
  bool is_number() const { return std::holds_alternative<double>(v); }
  bool is_string() const { return std::holds_alternative<std::string>(v); }
  bool is_array() const { return std::holds_alternative<Array>(v); }
  bool is_object() const { return std::holds_alternative<Object>(v); }
  bool is_bool() const { return std::holds_alternative<bool>(v); }
  // Typed access; throws dermis::Error naming `what` on a type mismatch.
  double number(const char* what = "value") const;
  int64_t integer(const char* what = "value") const;  // exact integers only
  const std::string& string(const char* what = "value") const;
  const Array& array(const char* what = "value") const;
  const Object& object(const char* what = "value") const;
  bool boolean(const char* what = "value") const;
  const Value* find(const std::string& key) const;  // objects only; nullptr if absent
  const Value& at(const std::string& key) const;    // throws dermis::Error naming a missing key
};

// Parses exactly one JSON value (surrounding whitespace allowed); errors name `source` and offset.
Value parse(const std::string& text, const std::string& source = "JSON");
// Compact serialisation (no spaces); numbers that are integers print without a fraction.
std::string dump(const Value& v);
std::string quote(const std::string& s);

}  // namespace dermis::json
