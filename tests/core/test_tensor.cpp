#include <catch2/catch.hpp>

#include <nexus/core/dtype.hpp>
#include <nexus/core/error.hpp>
#include <nexus/core/tensor.hpp>

#include <vector>

using nexus::DType;
using nexus::Shape;
using nexus::Tensor;

TEST_CASE("Shape basics", "[core]") {
  Shape s{2, 3, 4, 5};
  CHECK(s.rank() == 4);
  CHECK(s.numel() == 120);
  CHECK(s[-1] == 5);
  CHECK(s.to_string() == "[2, 3, 4, 5]");
  CHECK(s.drop_front() == Shape{3, 4, 5});
  CHECK(s.with_dim(0, 7) == Shape{7, 3, 4, 5});
  CHECK_THROWS_AS(s[4], nexus::Error);
  CHECK_THROWS_WITH(Shape({2, -1}), Catch::Contains("negative"));
}

TEST_CASE("Tensor owning, view, slice, reshape, clone", "[core]") {
  std::vector<float> v(24);
  for (int i = 0; i < 24; ++i) v[i] = static_cast<float>(i);
  Tensor t = Tensor::from(Shape{2, 3, 2, 2}, v);
  CHECK_FALSE(t.is_view());
  CHECK(t.nbytes() == 96);

  Tensor second = t.slice(1, 2);
  CHECK(second.is_view());
  CHECK(second.shape() == Shape{1, 3, 2, 2});
  CHECK(second.data()[0] == 12.0f);

  // row(i): item i without the leading dimension; element k of row 1 is v[12 + k].
  Tensor row1 = t.row(1);
  CHECK(row1.is_view());
  CHECK(row1.shape() == Shape{3, 2, 2});
  CHECK(row1.data()[0] == 12.0f);
  CHECK(row1.data()[11] == 23.0f);
  CHECK(t.slice(1, 2).reshape(Shape{3, 2, 2}).data() == row1.data());
  CHECK_THROWS_WITH(t.row(2), Catch::Contains("out of range"));
  CHECK_THROWS_AS(t.row(-1), nexus::Error);
  CHECK_THROWS_AS(Tensor().row(0), nexus::Error);

  Tensor flat = t.reshape(Shape{2, 12});
  CHECK(flat.data()[13] == 13.0f);
  CHECK_THROWS_WITH(t.reshape(Shape{5, 5}), Catch::Contains("cannot view"));

  Tensor copy = t.clone();
  copy.data()[0] = 100.0f;
  CHECK(t.data()[0] == 0.0f);

  CHECK_THROWS_WITH(t.data<std::int32_t>(), Catch::Contains("accessed as int32"));
  CHECK_THROWS_AS(t.slice(1, 3), nexus::Error);
  CHECK_THROWS_WITH(Tensor::from(Shape{2, 2}, v), Catch::Contains("expected 4"));

  float external[4] = {1, 2, 3, 4};
  Tensor ext = Tensor::view(external, Shape{1, 4});
  CHECK(ext.is_view());
  ext.data()[2] = 9;
  CHECK(external[2] == 9);
}

TEST_CASE("DType names round-trip", "[core]") {
  for (auto d : {DType::kFloat32, DType::kFloat16, DType::kInt32, DType::kUInt8})
    CHECK(nexus::parse_dtype(nexus::name_of(d)) == d);
  CHECK_THROWS_WITH(nexus::parse_dtype("complex64"), Catch::Contains("unknown dtype 'complex64'"));
  CHECK(nexus::size_of(DType::kFloat16) == 2);
}
