// A tiny outside project: links the installed nexus and uses a core type.
#include <nexus/core/tensor.hpp>

#include <cstdio>

int main() {
  nexus::Tensor t(nexus::Shape{2, 3, 4, 5});
  std::printf("numel=%lld\n", static_cast<long long>(t.numel()));
  return t.numel() == 120 ? 0 : 1;
}
