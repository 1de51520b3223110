// The CPU decode step of a decoder-only model (Llama's and Gemma 3's layers) in one call from Python. Every op is
// the torch path's own (the same ATen calls on the same operands: inference/weights/quantize.py's int4 / int8
// kernel calls, F.rms_norm, rotary as x cos + roll(x) signed_sin, invariant_attention.py's per-row SDPA), so the
// result is the torch path's bit for bit; what goes is the Python around them: a SmolLM2 decode step was ~1,500
// ops dispatched from Python (~7 ms of a ~14 ms step), the bf16 casts, row duplications, gathers and masks are
// loops here, and the GIL is released for the whole step.
//
// Every generated row is computed on its own (its attention over its own keys, the kernels row-invariant), so a
// row's result does not depend on what else is in the step.
#include <torch/extension.h>
#include <pybind11/stl.h>

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>

#include <cstring>
#include <map>
#include <utility>
#include <vector>

namespace {

using at::Tensor;

// One quantized projection: x [n, in] float32 -> [n, out] float32.
struct Linear {
  int64_t kind = 0;  // 0: int4 (_weight_int4pack_mm_for_cpu), 1: int8 (_weight_int8pack_mm)
  Tensor weight;     // packed int4 (uint8) or int8 [out, in]
  Tensor scales;     // int4: scales_and_zeros [levels * in / group, out, 2] bf16; int8: [out] bf16
  int64_t group = 0;
  int64_t levels = 1;
  Tensor bias;  // [out] float32, or undefined
  int64_t in = 0, out = 0;
  Tensor input;  // [max(rows, 2), levels * in] bf16, reused across calls
  // The kernels give one row the bits they give it among several on this machine (checked by fused_decoder.py,
  // the module's one_row): one row is multiplied alone, not twice.
  bool single_row = false;

  // x [rows, in] float32 (any strides) -> [rows, out] float32
  Tensor run(const Tensor& x_in, int64_t rows) {
    // The torch path multiplies two rows when it has one (where the kernels' one-row path rounds differently) and
    // [x, x] by [W1, W2] for two levels: the same bf16 operand, written in place.
    const Tensor xc = x_in.contiguous();
    const float* x = xc.data_ptr<float>();
    const int64_t kernel_rows = rows == 1 && !single_row ? 2 : rows;
    const int64_t width = levels * in;
    if (!input.defined() || input.size(0) != kernel_rows) {
      input = at::empty({kernel_rows, width}, at::TensorOptions().dtype(at::kBFloat16));
    }
    auto* dst = reinterpret_cast<c10::BFloat16*>(input.data_ptr());
    for (int64_t r = 0; r < kernel_rows; ++r) {
      const float* src = x + (rows == 1 ? 0 : r) * in;
      for (int64_t l = 0; l < levels; ++l) {
        c10::BFloat16* d = dst + r * width + l * in;
        for (int64_t i = 0; i < in; ++i) d[i] = c10::BFloat16(src[i]);
      }
    }
    Tensor result = kind == 0 ? at::_weight_int4pack_mm_for_cpu(input, weight, group, scales)
                              : at::_weight_int8pack_mm(input, weight, scales);
    Tensor y = at::empty({rows, out}, at::TensorOptions().dtype(at::kFloat));
    const auto* res = reinterpret_cast<const c10::BFloat16*>(result.data_ptr());
    const float* b = bias.defined() ? bias.data_ptr<float>() : nullptr;
    float* yd = y.data_ptr<float>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        const float v = static_cast<float>(res[r * out + o]);
        yd[r * out + o] = b ? b[o] + v : v;  // torch.add(bias, out): the bf16 output promoted, then added
      }
    }
    return y;
  }
};

struct Layer {
  Linear qkv, o, gate_up, down;
  Tensor input_norm, attn_out_norm, mlp_norm, mlp_out_norm;  // float32 [hidden]; *_out_norm: Gemma's sandwich
  Tensor q_norm, k_norm;                                     // float32 [head_dim], or undefined
  int64_t rope = 0;                                          // which of the model's rotary tables
  int64_t window = 0;                                        // sliding window, 0: none
  Tensor k_cache, v_cache;                                   // [slots, kv_heads, head_dim] float32 or bf16
};

class Decoder {
 public:
  Decoder(Tensor embed, double embed_scale, Tensor final_norm, int64_t heads, int64_t kv_heads, int64_t head_dim,
          int64_t intermediate, double eps, double scale, int64_t activation)
      : embed_(embed.contiguous()),
        embed_scale_(static_cast<float>(embed_scale)),
        final_norm_(final_norm.contiguous()),
        hidden_(embed.size(1)),
        heads_(heads),
        kv_heads_(kv_heads),
        head_dim_(head_dim),
        intermediate_(intermediate),
        eps_(static_cast<float>(eps)),
        scale_(static_cast<float>(scale)),
        activation_(activation) {
    TORCH_CHECK(embed_.scalar_type() == at::kFloat, "the embedding must be float32");
    TORCH_CHECK(head_dim % 2 == 0, "head_dim must be even");
    TORCH_CHECK(heads % kv_heads == 0, "heads must be a multiple of kv_heads");
  }

  // One projection: (kind, weight, scales, group, levels, bias or None, in, out, one row alone)
  static Linear linear(const py::tuple& t) {
    Linear l;
    l.kind = t[0].cast<int64_t>();
    l.weight = t[1].cast<Tensor>();
    l.scales = t[2].cast<Tensor>();
    l.group = t[3].cast<int64_t>();
    l.levels = t[4].cast<int64_t>();
    if (!t[5].is_none()) l.bias = t[5].cast<Tensor>().to(at::kFloat).contiguous();
    l.in = t[6].cast<int64_t>();
    l.out = t[7].cast<int64_t>();
    l.single_row = t[8].cast<bool>();
    return l;
  }

  static Tensor optional(const py::object& o) { return o.is_none() ? Tensor() : o.cast<Tensor>().contiguous(); }

  void add_layer(py::tuple linears, py::tuple norms, int64_t rope, int64_t window, Tensor k_cache, Tensor v_cache) {
    Layer layer;
    layer.qkv = linear(linears[0].cast<py::tuple>());
    layer.o = linear(linears[1].cast<py::tuple>());
    layer.gate_up = linear(linears[2].cast<py::tuple>());
    layer.down = linear(linears[3].cast<py::tuple>());
    layer.input_norm = optional(norms[0]);
    layer.attn_out_norm = optional(norms[1]);
    layer.mlp_norm = optional(norms[2]);
    layer.mlp_out_norm = optional(norms[3]);
    layer.q_norm = optional(norms[4]);
    layer.k_norm = optional(norms[5]);
    layer.rope = rope;
    layer.window = window;
    TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "caches must be contiguous");
    TORCH_CHECK(k_cache.scalar_type() == v_cache.scalar_type(), "k and v caches differ in dtype");
    TORCH_CHECK(k_cache.scalar_type() == at::kFloat || k_cache.scalar_type() == at::kBFloat16,
                "the fused decode takes float32 or bfloat16 caches");
    layer.k_cache = k_cache;
    layer.v_cache = v_cache;
    layers_.push_back(std::move(layer));
  }

  // ids, positions, write_slots: [n] int64; key_slots: [n, >= max position + 1] int64 (row r's cache slot of
  // every position up to its own); ropes: (cos, signed_sin) [n, 1, head_dim] float32 per rotary base, as the
  // model's RotaryEmbedding gives them. Returns the final hidden states [n, hidden] float32.
  Tensor forward(const Tensor& ids, const Tensor& positions, const Tensor& write_slots, const Tensor& key_slots,
                 const std::vector<std::pair<Tensor, Tensor>>& ropes) {
    const int64_t n = ids.size(0);
    const int64_t H = hidden_, Dh = head_dim_;
    const int64_t q_size = heads_ * Dh, kv_size = kv_heads_ * Dh;
    const auto* id = ids.data_ptr<int64_t>();
    const Tensor keys = key_slots.contiguous();
    const auto f32 = at::TensorOptions().dtype(at::kFloat);

    Tensor residual = at::empty({n, H}, f32);
    const float* emb = embed_.data_ptr<float>();
    float* res = residual.data_ptr<float>();
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t i = 0; i < H; ++i) res[r * H + i] = emb[id[r] * H + i] * embed_scale_;
    }
    const int64_t* slots = write_slots.data_ptr<int64_t>();
    const int64_t* pos = positions.data_ptr<int64_t>();
    std::map<int64_t, std::vector<Tensor>> masks;  // window -> each row's key mask, built once per step
    Tensor x;
    for (Layer& L : layers_) {
      // the residual stream (after adding the previous layer's output) normalised
      if (x.defined()) residual = at::add(x, residual);
      x = norm(residual, L.input_norm);

      // attention: q/k/v, per-head norms, rotary as the torch path (x cos + roll(x) signed_sin), then the cache
      Tensor qkv = L.qkv.run(x, n);
      Tensor q = qkv.narrow(1, 0, q_size).view({n, heads_, Dh});
      Tensor k = qkv.narrow(1, q_size, kv_size).view({n, kv_heads_, Dh});
      Tensor v = qkv.narrow(1, q_size + kv_size, kv_size).view({n, kv_heads_, Dh});
      if (L.q_norm.defined()) q = norm(q, L.q_norm);
      if (L.k_norm.defined()) k = norm(k, L.k_norm);
      const auto& rope = ropes.at(L.rope);
      q = at::addcmul(q * rope.first, q.roll({Dh / 2}, {-1}), rope.second);
      k = at::addcmul(k * rope.first, k.roll({Dh / 2}, {-1}), rope.second);
      Tensor attn = at::empty({n, heads_, Dh}, f32);
      auto& row_masks = masks[L.window];
      if (row_masks.empty()) {
        for (int64_t r = 0; r < n; ++r) row_masks.push_back(key_mask(pos[r], L.window));
      }
      if (L.k_cache.scalar_type() == at::kFloat) {
        write_cache<float>(L, k, v, slots, n);
      } else {
        write_cache<c10::BFloat16>(L, k, v, slots, n);
      }
      for (int64_t r = 0; r < n; ++r) attend_row(L, q, attn, r, pos[r], keys, row_masks[r]);
      Tensor o = L.o.run(attn.view({n, q_size}), n);
      if (L.attn_out_norm.defined()) o = norm(o, L.attn_out_norm);
      residual = at::add(o, residual);
      x = norm(residual, L.mlp_norm);

      // MLP: act(gate) * up, then down
      Tensor gu = L.gate_up.run(x, n);
      Tensor gate = gu.narrow(1, 0, intermediate_), up = gu.narrow(1, intermediate_, intermediate_);
      Tensor act = activation_ == 0 ? at::silu(gate) : at::gelu(gate, "tanh");
      x = L.down.run(at::mul(act, up), n);
      if (L.mlp_out_norm.defined()) x = norm(x, L.mlp_out_norm);
    }
    return norm(at::add(x, residual), final_norm_);
  }

  // The model runner gives the attention layers new caches (a new engine on the same model): follow them.
  void set_caches(const std::vector<std::pair<Tensor, Tensor>>& caches) {
    TORCH_CHECK(caches.size() == layers_.size(), "one (k, v) cache pair per layer");
    for (size_t i = 0; i < caches.size(); ++i) {
      layers_[i].k_cache = caches[i].first;
      layers_[i].v_cache = caches[i].second;
    }
  }

 private:
  Tensor norm(const Tensor& x, const Tensor& weight) const {
    return at::rms_norm(x, {x.size(-1)}, weight, static_cast<double>(eps_));
  }

  template <typename T>
  static void write_cache(Layer& L, const Tensor& k, const Tensor& v, const int64_t* slots, int64_t n) {
    const int64_t width = L.k_cache.size(1) * L.k_cache.size(2);
    T* kc = reinterpret_cast<T*>(L.k_cache.data_ptr());
    T* vc = reinterpret_cast<T*>(L.v_cache.data_ptr());
    const Tensor kk = k.contiguous(), vv = v.contiguous();
    const float* ks = kk.data_ptr<float>();
    const float* vs = vv.data_ptr<float>();
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t i = 0; i < width; ++i) {
        kc[slots[r] * width + i] = static_cast<T>(ks[r * width + i]);
        vc[slots[r] * width + i] = static_cast<T>(vs[r * width + i]);
      }
    }
  }

  static constexpr int64_t kKeyBlock = 64;  // invariant_attention.KEY_BLOCK

  static int64_t padded_keys(int64_t p) { return (p + 1 + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }

  // [1, keys] bool: the keys a row at position p attends (causal, within the window; the padding masked)
  static Tensor key_mask(int64_t p, int64_t window) {
    const int64_t keys = padded_keys(p);
    Tensor mask = at::empty({1, keys}, at::TensorOptions().dtype(at::kBool));
    bool* m = mask.data_ptr<bool>();
    for (int64_t j = 0; j < keys; ++j) m[j] = j <= p && (window <= 0 || j > p - window);
    return mask;
  }

  // One generated row at position p, as inference/layers/invariant_attention.py computes it: alone, over its
  // keys [0, p] gathered and zero-padded to a multiple of 64 (masked), one SDPA call: the same call, the same
  // bits, whatever else is in the step.
  void attend_row(Layer& L, const Tensor& q, Tensor& out, int64_t r, int64_t p, const Tensor& key_slots,
                  const Tensor& mask) const {
    const int64_t keys = padded_keys(p);
    const int64_t width = kv_heads_ * head_dim_;
    const auto f32 = at::TensorOptions().dtype(at::kFloat);
    Tensor k = at::empty({keys, kv_heads_, head_dim_}, f32), v = at::empty({keys, kv_heads_, head_dim_}, f32);
    float* kd = k.data_ptr<float>();
    float* vd = v.data_ptr<float>();
    const int64_t* slots = key_slots.data_ptr<int64_t>() + r * key_slots.size(1);
    if (L.k_cache.scalar_type() == at::kFloat) {
      const float* kc = L.k_cache.data_ptr<float>();
      const float* vc = L.v_cache.data_ptr<float>();
      for (int64_t j = 0; j <= p; ++j) {
        std::memcpy(kd + j * width, kc + slots[j] * width, width * sizeof(float));
        std::memcpy(vd + j * width, vc + slots[j] * width, width * sizeof(float));
      }
    } else {
      const auto* kc = reinterpret_cast<const c10::BFloat16*>(L.k_cache.data_ptr());
      const auto* vc = reinterpret_cast<const c10::BFloat16*>(L.v_cache.data_ptr());
      for (int64_t j = 0; j <= p; ++j) {
        for (int64_t i = 0; i < width; ++i) {
          kd[j * width + i] = static_cast<float>(kc[slots[j] * width + i]);
          vd[j * width + i] = static_cast<float>(vc[slots[j] * width + i]);
        }
      }
    }
    std::fill(kd + (p + 1) * width, kd + keys * width, 0.f);
    std::fill(vd + (p + 1) * width, vd + keys * width, 0.f);
    Tensor row = q.narrow(0, r, 1);  // [1, H, D]
    Tensor result = at::scaled_dot_product_attention(
        row.transpose(0, 1).unsqueeze(0), k.transpose(0, 1).unsqueeze(0), v.transpose(0, 1).unsqueeze(0), mask, 0.0,
        false, static_cast<double>(scale_), heads_ != kv_heads_);
    out.narrow(0, r, 1).copy_(result.squeeze(0).transpose(0, 1));
  }

  Tensor embed_;
  float embed_scale_;
  Tensor final_norm_;
  int64_t hidden_, heads_, kv_heads_, head_dim_, intermediate_;
  float eps_, scale_;
  int64_t activation_;  // 0: SiLU, 1: GELU (tanh)
  std::vector<Layer> layers_;
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<Decoder>(m, "Decoder")
      .def(py::init<Tensor, double, Tensor, int64_t, int64_t, int64_t, int64_t, double, double, int64_t>())
      .def("add_layer", &Decoder::add_layer)
      .def("forward", &Decoder::forward, py::call_guard<py::gil_scoped_release>())
      .def("set_caches", &Decoder::set_caches);
}
