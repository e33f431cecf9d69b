// SPDX-License-Identifier: GPL-2.0
#pragma once

#include <cstdint>

namespace holdfast::fuse {

// Opcodes are small integers; tables indexed by opcode use this bound.
constexpr uint32_t kMaxOpcode = 64;

// "LOOKUP", "WRITE", ... or nullptr for an opcode we do not know.
const char *opcode_name(uint32_t opcode);

} // namespace holdfast::fuse
