"""Heterogeneous memory management, as drivers see it (hmm.md): hmm_range_fault()'s
HmmRange and HMM_PFN_* encoding, and the test_hmm "dmirror" device."""
from __future__ import annotations

from .drivers.test_hmm import DmirrorDevice, Dmirror, ReadResult, TestHmm, WriteResult  # noqa: F401
from .mm.hmm import (HMM_PFN_ERROR, HMM_PFN_FLAGS, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE,  # noqa: F401
                     HMM_PFN_VALID, HMM_PFN_WRITE, HMM_RANGE_DEFAULT_TIMEOUT, HmmRange,
                     hmm_pfn_to_page)
