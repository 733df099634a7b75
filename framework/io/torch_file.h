// Reading PyTorch's torch.save files (.pth/.pt) without Python: the zip archive PyTorch has written
// since 1.6 (ARCHIVE/data.pkl, a pickle of the saved object, and ARCHIVE/data/KEY, the raw
// little-endian bytes of each storage). The unpickler understands the opcodes of pickle protocols
// 2 to 5 that torch.save emits and builds tensors from torch._utils._rebuild_tensor_v2 and
// _rebuild_parameter; any other class is kept as an opaque object, so whole training checkpoints
// ({"epoch": 3, "state_dict": {...}, "args": Namespace(...)}) load too. Nothing in the file is
// executed. The file is untrusted input: every offset, length and shape is checked, and a damaged
// file is rejected with one dermis::Error naming the file and the problem.
#pragma once

#include <string>

#include "safetensors.h"

namespace dermis::io {

// The tensors of a torch.save file as f32 (f16, bf16, f64 and integer tensors converted), in the
// order of the state dict. The state dict is the saved object itself when it is a dict holding
// tensors, else the first of its entries "state_dict", "model_state_dict", "model", "module",
// "net", "ema", "state" that is. Nested dicts of tensors get dotted names.
TensorFile load_torch(const std::string& path);

// A weights file of any kind dermis reads, told apart by its first bytes: a torch.save zip
// (load_torch) or safetensors (load_safetensors; F32, F16, BF16, F64 and integer tensors).
TensorFile load_weights_file(const std::string& path);

}  // namespace dermis::io
