// C entry points over the parts of libtorch's CUDA C++ API that tch does not bind: the
// caching allocator's statistics and at::cuda::CUDAGraph. Each returns 0 on success and 1
// on a C++ exception, whose message is copied into `err` (NUL-terminated, truncated to
// `err_len`). Called from src/lib.rs only.
#include <ATen/Context.h>
#include <ATen/autocast_mode.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <optional>

namespace {

void copy_message(char* err, size_t err_len, const char* message) {
  if (err == nullptr || err_len == 0) return;
  std::strncpy(err, message, err_len - 1);
  err[err_len - 1] = '\0';
}

template <typename F>
int guarded(char* err, size_t err_len, F body) {
  try {
    body();
    return 0;
  } catch (const std::exception& e) {
    copy_message(err, err_len, e.what());
  } catch (...) {
    copy_message(err, err_len, "unknown C++ exception");
  }
  return 1;
}

}  // namespace

// A graph and, between capture_begin and capture_end, the stream that was current before
// the capture made a side stream current (capture is not allowed on the legacy default
// stream libtorch uses otherwise). Set and restored by hand, not by CUDAStreamGuard, whose
// header-inline code would call the CUDA runtime directly (one more library to link).
// The capturing device is made current too (CUDAGraph captures on the current device's
// current stream) and restored afterwards.
struct memad_cuda_graph {
  at::cuda::CUDAGraph graph;
  std::optional<c10::cuda::CUDAStream> stream_before;
  c10::DeviceIndex device_before = 0;
  bool autocast_cache_was_enabled = true;
};

namespace {
void restore_stream(memad_cuda_graph* graph) {
  if (graph->stream_before) {
    c10::cuda::setCurrentCUDAStream(*graph->stream_before);
    graph->stream_before.reset();
  }
  c10::cuda::set_device(graph->device_before);
}
}  // namespace

extern "C" {

int memad_cuda_device_count(int* count, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { *count = static_cast<int>(c10::cuda::device_count()); });
}

// out: allocated, peak allocated, reserved, peak reserved (bytes, all pools).
// Both statistics calls initialise CUDA first, as any CUDA tensor would: before that the
// caching allocator has no devices ("Invalid device argument ...: did you call init?").
int memad_cuda_memory_stats(int device, int64_t* out, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    at::globalContext().lazyInitDevice(at::kCUDA);
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(
        static_cast<c10::DeviceIndex>(device));
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    out[0] = stats.allocated_bytes[all].current;
    out[1] = stats.allocated_bytes[all].peak;
    out[2] = stats.reserved_bytes[all].current;
    out[3] = stats.reserved_bytes[all].peak;
  });
}

int memad_cuda_reset_peak_memory(int device, char* err, size_t err_len) {
  return guarded(err, err_len, [&] {
    at::globalContext().lazyInitDevice(at::kCUDA);
    c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device));
  });
}

int memad_cuda_graph_new(memad_cuda_graph** graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { *graph = new memad_cuda_graph(); });
}

void memad_cuda_graph_free(memad_cuda_graph* graph) {
  try {
    delete graph;
  } catch (...) {
  }
}

// As torch.cuda.graph's __enter__: make `device` current, wait for it, make a side stream
// of it current, begin capturing into the graph's private memory pool. Autocast's cache
// of cast weights is switched off for the capture (a cached cast made before the capture
// would be freed when its autocast region ends while the graph still reads it).
int memad_cuda_graph_capture_begin(memad_cuda_graph* graph, int device, char* err,
                                   size_t err_len) {
  return guarded(err, err_len, [&] {
    const auto index = static_cast<c10::DeviceIndex>(device);
    graph->device_before = c10::cuda::current_device();
    graph->autocast_cache_was_enabled = at::autocast::is_autocast_cache_enabled();
    try {
      c10::cuda::set_device(index);
      c10::cuda::device_synchronize();
      graph->stream_before.emplace(c10::cuda::getCurrentCUDAStream(index));
      c10::cuda::setCurrentCUDAStream(c10::cuda::getStreamFromPool(false, index));
      at::autocast::set_autocast_cache_enabled(false);
      graph->graph.capture_begin();
    } catch (...) {
      at::autocast::set_autocast_cache_enabled(graph->autocast_cache_was_enabled);
      restore_stream(graph);
      throw;
    }
  });
}

// Ends the capture (also after a failed one: the stream leaves capture mode either way)
// and restores the current stream and the autocast cache.
int memad_cuda_graph_capture_end(memad_cuda_graph* graph, char* err, size_t err_len) {
  const int status = guarded(err, err_len, [&] { graph->graph.capture_end(); });
  const int restored = guarded(status ? nullptr : err, err_len, [&] {
    at::autocast::set_autocast_cache_enabled(graph->autocast_cache_was_enabled);
    restore_stream(graph);
  });
  return status || restored;
}

// Replays the captured work on the current stream.
int memad_cuda_graph_replay(memad_cuda_graph* graph, char* err, size_t err_len) {
  return guarded(err, err_len, [&] { graph->graph.replay(); });
}

}  // extern "C"
