// Named choices: an enum whose values have names (as flags, JSON and messages spell them), with one
// table per enum. Specialise Choices<E> with `static constexpr std::array<Choice<E>, N> list`; then
// name_of(e), parse_choice<E>(text, what) (an error listing the valid names, e.g. "flag --schedule:
// expected step, multistep, cosine, plateau or constant, got 'linear'") and choice_names<E>(sep).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "error.h"

namespace dermis {

template <class E>
struct Choice {
  E value;
  std::string_view name;
};

template <class E>
struct Choices;  // specialise per enum

template <class E>
std::string_view name_of(E e) {
  for (const auto& c : Choices<E>::list)
    if (c.value == e) return c.name;
  return "?";
}

template <class E>
std::optional<E> find_choice(std::string_view s) {
  for (const auto& c : Choices<E>::list)
    if (c.name == s) return c.value;
  return std::nullopt;
}

// "a, b or c" (sep ", ", last " or "), or "a | b | c" with sep = last = " | ".
template <class E>
std::string choice_names(std::string_view sep = ", ", std::string_view last = " or ") {
  std::string s;
  const auto& l = Choices<E>::list;
  for (size_t i = 0; i < l.size(); ++i) {
    if (i) s += i + 1 == l.size() ? last : sep;
    s += l[i].name;
  }
  return s;
}

// `what` names the source in the error, e.g. "flag --schedule".
template <class E>
E parse_choice(std::string_view s, std::string_view what) {
  if (auto v = find_choice<E>(s)) return *v;
  DERMIS_FAIL("{}: expected {}, got '{}'", what, choice_names<E>(), s);
}

}  // namespace dermis
