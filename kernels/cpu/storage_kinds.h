/* Generated from edgec.core.storage_kinds (python -m edgec.core.storage_kinds); do not edit. */
#ifndef EDGEC_STORAGE_KINDS_H
#define EDGEC_STORAGE_KINDS_H

enum Kind {
    KIND_F16 = 0,
    KIND_BF16 = 1,
    KIND_FP8 = 2,
    KIND_INT8 = 3,
    KIND_INT2 = 4,
    KIND_INT3 = 5,
    KIND_INT4 = 6,
    KIND_INT2_ASYM = 7,
    KIND_INT3_ASYM = 8,
    KIND_INT4_ASYM = 9,
    KIND_NF4 = 10,
    KIND_COUNT = 11
};

#define EDGEC_KIND_NAMES { [KIND_F16] = "f16", [KIND_BF16] = "bf16", [KIND_FP8] = "fp8", [KIND_INT8] = "int8", [KIND_INT2] = "int2", [KIND_INT3] = "int3", [KIND_INT4] = "int4", [KIND_INT2_ASYM] = "int2_asym", [KIND_INT3_ASYM] = "int3_asym", [KIND_INT4_ASYM] = "int4_asym", [KIND_NF4] = "nf4" }

#endif
