// RmspropSequence: B clipped RMSProp steps of one variable in one pass over its memory
// (docs/spec.md section 6; distral_tf/model/optim.py, SharedRMSProp.apply_sequence).
//
//   for k in 0..B-1 with scales[k] > 0:
//     d  = grads[k] * scales[k]
//     ms = ms + (d * d - ms) * (1 - decay)
//     var = var - rates[k] * d / sqrt(ms + epsilon)
//
// A step whose scale is 0 (a skipped, non-finite update) leaves var and ms unchanged. The
// parameters are walked in blocks that stay in the L1 cache while the B gradients stream past
// them, so var and ms are read and written once per call. The variables are updated in place
// under their locks; where a read still holds a variable's buffer (a snapshot's copy), the new
// values go to a fresh buffer instead, in the same pass (the fused training kernels copy first).

#define EIGEN_USE_THREADS

#include <cmath>
#include <cstdint>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/kernels/training_op_helpers.h"
#include "tensorflow/core/util/work_sharder.h"

namespace distral_tf {
namespace {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using CPUDevice = Eigen::ThreadPoolDevice;

constexpr int64_t kBlock = 512;

// Steps of the parameters [begin, end): read from var_in and ms_in, written to var_out and
// ms_out (the same buffers, or fresh ones where a read still holds the old). Compiled for several
// instruction sets where the compiler can, and chosen at load time for the CPU at hand.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void StepBlocks(const float* var_in, const float* ms_in, float* var_out, float* ms_out,
                const float* __restrict grads, int64_t n, int64_t count, const float* scales, const float* rates,
                float decay, float epsilon, int64_t begin, int64_t end) {
  float value[kBlock], square[kBlock];
  const float keep = 1.0f - decay;
  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t len = end - b < kBlock ? end - b : kBlock;
    for (int64_t j = 0; j < len; ++j) {
      value[j] = var_in[b + j];
      square[j] = ms_in[b + j];
    }
    for (int64_t k = 0; k < count; ++k) {
      const float scale = scales[k], rate = rates[k];
      if (!(scale > 0.0f)) continue;  // a skipped update
      const float* g = grads + k * n + b;
      for (int64_t j = 0; j < len; ++j) {
        const float d = g[j] * scale;
        const float q = square[j] + (d * d - square[j]) * keep;
        square[j] = q;
        value[j] -= rate * d / std::sqrt(q + epsilon);
      }
    }
    for (int64_t j = 0; j < len; ++j) {
      var_out[b + j] = value[j];
      ms_out[b + j] = square[j];
    }
  }
}

// The variable's tensor to write: itself, or a fresh buffer of its shape where a read still holds it
// (copy on write, as the fused training kernels do; the new values are written straight into it).
absl::Status Writable(OpKernelContext* context, tensorflow::Var* var, Tensor* out) {
  Tensor* tensor = var->tensor();
  if (!var->copy_on_read_mode.load() && tensor->RefCountIsOne()) {
    *out = *tensor;
    return absl::OkStatus();
  }
  tsl::AllocatorAttributes attributes;
  attributes.set_gpu_compatible(true);
  attributes.set_nic_compatible(true);
  return context->allocate_temp(tensor->dtype(), tensor->shape(), out, attributes);
}

class RmspropSequenceOp : public OpKernel {
 public:
  explicit RmspropSequenceOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("decay", &decay_));
    OP_REQUIRES_OK(context, context->GetAttr("epsilon", &epsilon_));
  }

  void Compute(OpKernelContext* context) override {
    tensorflow::core::RefCountPtr<tensorflow::Var> var_resource, ms_resource;
    OP_REQUIRES_OK(context,
                   tensorflow::LookupResource(context, tensorflow::HandleFromInput(context, 0), &var_resource));
    OP_REQUIRES_OK(context,
                   tensorflow::LookupResource(context, tensorflow::HandleFromInput(context, 1), &ms_resource));
    auto locks = tensorflow::MaybeLockVariableInputMutexesInOrder<CPUDevice, float>(context, true, false, {0, 1});
    // Pointers, not copies: a copy would hold the buffers and force Writable to allocate.
    const Tensor& var = *var_resource->tensor();
    const Tensor& ms = *ms_resource->tensor();
    const Tensor& grads = context->input(2);
    const Tensor& scales = context->input(3);
    const Tensor& rates = context->input(4);
    OP_REQUIRES(context, var.IsInitialized() && ms.IsInitialized() && var.dtype() == tensorflow::DT_FLOAT &&
                             ms.dtype() == tensorflow::DT_FLOAT,
                absl::FailedPreconditionError("RmspropSequence: var and ms must be initialized float32 variables"));
    OP_REQUIRES(context, var.shape() == ms.shape(),
                absl::InvalidArgumentError("RmspropSequence: var and ms differ in shape: " + var.shape().DebugString() +
                                           " against " + ms.shape().DebugString()));
    tensorflow::TensorShape step_shape = grads.shape();
    if (step_shape.dims() > 0) step_shape.RemoveDim(0);
    OP_REQUIRES(context, grads.dims() == var.dims() + 1 && step_shape == var.shape(),
                absl::InvalidArgumentError("RmspropSequence: grads must be [B, *var.shape], got " +
                                           grads.shape().DebugString() + " for " + var.shape().DebugString()));
    const int64_t count = grads.dim_size(0);
    OP_REQUIRES(context, scales.dims() == 1 && scales.dim_size(0) == count && rates.dims() == 1 &&
                             rates.dim_size(0) == count,
                absl::InvalidArgumentError("RmspropSequence: scales and rates must be [B]"));
    const int64_t n = var.NumElements();
    if (n == 0) return;
    Tensor var_out, ms_out;
    OP_REQUIRES_OK(context, Writable(context, var_resource.get(), &var_out));
    OP_REQUIRES_OK(context, Writable(context, ms_resource.get(), &ms_out));
    const float* var_in = var.flat<float>().data();
    const float* ms_in = ms.flat<float>().data();
    float* value = var_out.flat<float>().data();
    float* square = ms_out.flat<float>().data();
    const float* g = grads.flat<float>().data();
    const float* scale = scales.flat<float>().data();
    const float* rate = rates.flat<float>().data();
    const float decay = decay_, epsilon = epsilon_;
    auto work = [&](int64_t first_block, int64_t last_block) {
      StepBlocks(var_in, ms_in, value, square, g, n, count, scale, rate, decay, epsilon, first_block * kBlock,
                 last_block * kBlock < n ? last_block * kBlock : n);
    };
    const auto& threads = *context->device()->tensorflow_cpu_worker_threads();
    tensorflow::Shard(threads.num_threads, threads.workers, (n + kBlock - 1) / kBlock, kBlock * 8 * count, work);
    *var_resource->tensor() = var_out;
    *ms_resource->tensor() = ms_out;
  }

 private:
  float decay_;
  float epsilon_;
};

}  // namespace
}  // namespace distral_tf

REGISTER_OP("RmspropSequence")
    .Input("var: resource")
    .Input("ms: resource")
    .Input("grads: float")
    .Input("scales: float")
    .Input("rates: float")
    .Attr("decay: float")
    .Attr("epsilon: float")
    .SetShapeFn(tensorflow::shape_inference::NoOutputs)
    .Doc("B clipped RMSProp steps of one variable, in order, in one pass over its memory.");

REGISTER_KERNEL_BUILDER(Name("RmspropSequence").Device(tensorflow::DEVICE_CPU), distral_tf::RmspropSequenceOp);
