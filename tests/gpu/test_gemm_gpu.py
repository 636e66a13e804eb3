"""GPU correctness of the W4A16 kernels (skipped without CuPy and an NVIDIA GPU).

Discipline: fresh random data for every test (the seed is in each failure message), the output buffer is
filled with NaN before every launch and must come back fully written, every launch is synchronized and
checked, and results are compared with a float64 numpy reference x @ module.dequantize(float64):
||y - ref|| / ||ref|| <= 2e-3 and no NaN/Inf.
"""

from __future__ import annotations

import numpy as np
import pytest

from awqfmt.dtypes import from_float32
from awqfmt.gpu import GemmError, gemm_packed, gpu_available
from awqfmt.gpu.gemm import GEMV_AUTO_MAX_M, GEMV_MAX_M, gemv_candidate_configs
from awqfmt.logical import LogicalModule, encode
from awqfmt.spec import get_spec

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs CuPy and an NVIDIA GPU")]

TOL = 2e-3
LAYOUTS = ["awq", "logical", "gptq", "gptq-v2"]
GROUPS = [32, 64, 128, -1]


def _rng():
    seed = int(np.random.SeedSequence().entropy % (1 << 63))
    return np.random.default_rng(seed), seed


def make_module(rng, K, N, G, *, layout="awq", bf16=False, act_order=False) -> LogicalModule:
    Ge = K if G == -1 else G
    n_g = K // Ge
    codes = rng.integers(0, 16, (K, N), dtype=np.uint8)
    # GPTQ v1 stores z - 1: z in 1..16; the others store z: 0..15
    lo, hi = (1, 17) if layout == "gptq" else (0, 16)
    zeros = rng.integers(lo, hi, (n_g, N)).astype(np.uint16)
    s = (rng.random((n_g, N)) * 0.02 + 0.001).astype(np.float32)
    if bf16:
        scales, sd = from_float32(s, "BF16"), "BF16"
    else:
        scales, sd = s.astype(np.float16), "F16"
    g_idx = None
    if act_order:
        g_idx = rng.permutation(np.arange(K) // Ge).astype(np.int32)
    return LogicalModule(bits=4, group_size=G, codes=codes, zeros=zeros, scales=scales, scale_dtype=sd, g_idx=g_idx)


def _tensors(layout, module) -> dict:
    """The module packed in `layout`: {short name: numpy array}, as gemm_packed takes it."""
    return {name: arr for name, (arr, _dt) in encode(get_spec(layout), module).items()}


def _outputs(layout, module, x, method, config, launches=1, decode=None):
    """y of `launches` launches on the same input (float64, NaN-poisoned before each), and the last info."""
    import cupy as cp

    tensors = _tensors(layout, module)
    outs, info = [], {}
    for _ in range(launches):
        y = cp.full((x.shape[0], module.N), cp.nan, dtype=cp.float16)  # poison: unwritten outputs stay NaN
        info = {}
        gemm_packed(layout, tensors, x, group_size=module.group_size, scale_dtype=module.scale_dtype, method=method,
                    decode=decode, out=y, config=config, check=True, info=info)
        outs.append(cp.asnumpy(y).astype(np.float64))
    return outs, info


def run_case(layout, module, M, *, method="auto", decode=None, config=None, rng=None, seed=None, x=None):
    if x is None:
        x = rng.standard_normal((M, module.K)).astype(np.float16)
    ref = x.astype(np.float64) @ module.dequantize(np.float64)
    (got,), info = _outputs(layout, module, x, method, config, decode=decode)
    where = f"layout={layout} K={module.K} N={module.N} M={M} G={module.group_size} method={info.get('method')} " \
            f"kernel={info.get('kernel')} seed={seed}"
    assert not np.isnan(got).any(), f"{int(np.isnan(got).sum())} outputs not written (NaN poison left): {where}"
    assert np.isfinite(got).all(), f"non-finite output: {where}"
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert rel <= TOL, f"relative error {rel:.3g} > {TOL}: {where}"
    return rel, info


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("G", GROUPS)
@pytest.mark.parametrize("M,method", [(1, "skinny"), (5, "skinny"), (16, "skinny"), (33, "skinny"), (3, "dequant"),
                                      (70, "auto")])
def test_layout_group_method(layout, G, M, method):
    rng, seed = _rng()
    module = make_module(rng, 512, 264, G, layout=layout)  # N/8 = 33: odd word count
    run_case(layout, module, M, method=method, rng=rng, seed=seed)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("G", GROUPS)
@pytest.mark.parametrize("M", list(range(1, GEMV_MAX_M + 1)))
def test_gemv_layout_group(layout, G, M):
    """The CUDA-core GEMV, every layout and group size, 1-4 tokens; N/8 = 33 words forces 1 word per thread."""
    rng, seed = _rng()
    module = make_module(rng, 512, 264, G, layout=layout)
    _, info = run_case(layout, module, M, method="gemv", rng=rng, seed=seed)
    assert info["kernel"].startswith("w4a16_gemv<")


@pytest.mark.parametrize("config", gemv_candidate_configs(1) + [
    {"vw": 4, "fl": 8, "pf": 1, "rpt": 8},           # smallest K slice: many splits
    {"vw": 2, "fl": 2, "pf": 0, "rpt": 24},          # rpt not a multiple of the group
    {"vw": 1, "fl": 4, "pf": 1, "target_blocks": 1},  # no K split: the block writes y directly
    {"vw": 2, "fl": 8, "pf": 1, "rpt": 100000}])
@pytest.mark.parametrize("layout", ["awq", "gptq"])  # the two load paths (natural order differs only in decode)
def test_gemv_configs(config, layout):
    rng, seed = _rng()
    module = make_module(rng, 2048, 1024, 128, layout=layout)
    for M in ((1, 3) if layout == "awq" else (1,)):
        run_case(layout, module, M, method="gemv", config=config, rng=rng, seed=seed)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("method,M,config", [("gemv", 1, None), ("gemv", 3, None),
                                             ("gemv", 1, {"vw": 1, "fl": 4, "pf": 1, "waves": 1}),
                                             ("gemv", 2, {"vw": 4, "fl": 4, "pf": 0, "waves": 1}),
                                             ("skinny", 1, None), ("skinny", 16, None), ("dequant", 3, None)])
def test_activation_outliers(layout, method, M, config):
    """Real activations have a few channels in the thousands. Eight consecutive channels at +-8000 make the
    GEMV's fp16 partial sums of 4-8 rows overflow (8 * 15 * 8000 >> 65504) for most columns: the kernel must
    notice and redo those sums in fp32; every method must give the float64 reference (finite, within 2e-3)."""
    rng, seed = _rng()
    K = 1024
    module = make_module(rng, K, 512, 128, layout=layout)
    x = rng.standard_normal((M, K)).astype(np.float16)
    for start in (64, 520):  # two batches of outliers, in different groups
        x[:, start:start + 8] = np.where(rng.random((M, 1)) < 0.5, -8000.0, 8000.0).astype(np.float16)
    run_case(layout, module, M, method=method, config=config, rng=rng, seed=seed, x=x)


def test_auto_uses_gemv_for_few_tokens():
    rng, seed = _rng()
    module = make_module(rng, 1024, 512, 128)
    for M in range(1, GEMV_AUTO_MAX_M + 1):
        _, info = run_case("awq", module, M, rng=rng, seed=seed)
        assert info["method"] == "gemv", info
    _, info = run_case("awq", module, GEMV_MAX_M + 1, rng=rng, seed=seed)
    assert info["method"] == "skinny", info


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("method", ["gemv", "skinny", "dequant"])
def test_bf16_scales(layout, method):
    rng, seed = _rng()
    module = make_module(rng, 768, 320, 64, layout=layout, bf16=True)
    for M in ((1, 4) if method == "gemv" else (1, 9)):
        run_case(layout, module, M, method=method, rng=rng, seed=seed)


@pytest.mark.parametrize("layout", ["gptq", "gptq-v2"])
@pytest.mark.parametrize("G", [32, 128])
@pytest.mark.parametrize("M", [1, 40])
def test_act_order(layout, G, M):
    rng, seed = _rng()
    module = make_module(rng, 1024, 256, G, layout=layout, act_order=True)
    assert module.has_act_order()
    _, info = run_case(layout, module, M, rng=rng, seed=seed)
    assert info["method"] == "dequant"


@pytest.mark.parametrize("layout,K,N,G", [(layout, K, N, G) for layout in LAYOUTS for K, N, G in
                                          [(2048, 1024, 128), (1000, 1000, -1), (96, 520, 32), (4096, 4096, 64)]]
                         + [("awq", 100, 1024, -1), ("logical", 60, 2048, -1)])
def test_gemv_l2_prefetch(layout, K, N, G):
    """l2pf: the block's slice requested into L2 before the wait, on every layout; N % 32 != 0 (1000, 520) takes
    the kernel without the prefetch, which must still be right; K % 8 != 0 (100, 60: AWQ-like only) prefetches
    rows up to K with the bounds-tested loads."""
    rng, seed = _rng()
    module = make_module(rng, K, N, G, layout=layout)
    for M in (1, 4):
        _, info = run_case(layout, module, M, method="gemv", config={"vw": 2, "fl": 8, "pf": 1, "l2pf": 1}, rng=rng,
                           seed=seed)
        assert info["kernel"].startswith("w4a16_gemv<")
        assert info["l2pf"] is (N % 32 == 0), info


@pytest.mark.parametrize("layout,K", [("awq", 100), ("logical", 100), ("awq", 72), ("logical", 8), ("gptq", 104),
                                      ("gptq-v2", 8)])
@pytest.mark.parametrize("method", ["gemv", "skinny", "dequant"])
def test_odd_k_one_group(layout, K, method):
    rng, seed = _rng()
    module = make_module(rng, K, 136, -1, layout=layout)
    for M in ((1, 2, 3) if method == "gemv" else (1, 3, 17)):
        run_case(layout, module, M, method=method, rng=rng, seed=seed)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("K,N,M", [(4096, 4096, 1), (4096, 4096, 16), (4096, 4096, 64), (8192, 1024, 7),
                                   (2048, 11008, 2), (11008, 2048, 1)])
def test_large_shapes(layout, K, N, M):
    rng, seed = _rng()
    module = make_module(rng, K, N, 128, layout=layout)
    run_case(layout, module, M, rng=rng, seed=seed)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("K,N,M", [(4096, 4096, 1), (11008, 2048, 2), (2048, 11008, 4)])
def test_large_shapes_gemv(layout, K, N, M):
    rng, seed = _rng()
    module = make_module(rng, K, N, 128, layout=layout)
    run_case(layout, module, M, method="gemv", rng=rng, seed=seed)


@pytest.mark.parametrize("config", [{"wc": 4, "nt": 1, "pf": 1, "chk": 0}, {"wc": 1, "nt": 1, "pf": 2, "chk": 1},
                                    {"wc": 2, "nt": 1, "pf": 0, "chk": 1}, {"wc": 2, "nt": 1, "pf": 0, "chk": 0},
                                    {"wc": 2, "nt": 2, "pf": 1, "chk": 1}, {"wc": 1, "nt": 4, "pf": 1, "chk": 0},
                                    {"wc": 1, "nt": 4, "pf": 0, "chk": 1}, {"wc": 2, "nt": 1, "pf": 3, "chk": 0},
                                    {"wc": 1, "nt": 2, "pf": 4, "chk": 1}, {"wc": 1, "nt": 4, "pf": 3, "chk": 1},
                                    {"wc": 1, "nt": 2, "pf": 3, "chk": 0},
                                    # 4 stages do not fit in shared memory: falls back to 3
                                    {"wc": 4, "nt": 1, "pf": 4, "chk": 1, "target_blocks": 7},
                                    {"wc": 2, "nt": 1, "pf": 3, "chk": 1, "target_blocks": 1},
                                    {"wc": 4, "nt": 1, "pf": 1, "chk": 1, "target_blocks": 100000},
                                    {"wc": 1, "nt": 2, "pf": 2, "chk": 0}, {"wc": 1, "nt": 1, "pf": 2, "chk": 0},
                                    {"wc": 2, "nt": 2, "pf": 2, "chk": 1, "splits": 5},
                                    {"wc": 2, "nt": 1, "pf": 1, "chk": 0, "splits": 3}])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_skinny_configs(config, layout):
    """Tile shapes, register prefetch 0-2 and cp.async pipelines of 3-4 stages, per-unit (chk=0) and per-chunk
    (chk=1) zero/scale application, no K split (target_blocks=1), odd and maximal splits."""
    rng, seed = _rng()
    module = make_module(rng, 2048, 1024, 128, layout=layout)
    for M in (1, 6, 19):
        run_case(layout, module, M, method="skinny", config=config, rng=rng, seed=seed)


@pytest.mark.parametrize("config", [{"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16},
                                    {"wc": 1, "nt": 2, "pf": 1, "chk": 1, "warps": 16, "target_blocks": 1},
                                    {"wc": 2, "nt": 1, "pf": 0, "chk": 0, "warps": 16, "splits": 3},
                                    {"wc": 1, "nt": 1, "pf": 2, "chk": 1, "warps": 16, "splits": 2}])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("K,G", [(2048, 128), (1000, -1), (96, 32)])
def test_skinny_16_warps(config, layout, K, G):
    """16-warp blocks (the two halves of a block's K range on warps 0-7 and 8-15): K splits across blocks or
    none, K not a multiple of 32, and K = 96 (3 units: the second half gets one, most warps none)."""
    rng, seed = _rng()
    module = make_module(rng, K, 1024, G, layout=layout)
    for M in (1, 16, 19):
        _, info = run_case(layout, module, M, method="skinny", config=config, rng=rng, seed=seed)
        assert info["threads"] == 512, info


@pytest.mark.parametrize("M", [1, 16, 300])
def test_logical_lop3_decoder(M):
    rng, seed = _rng()
    module = make_module(rng, 1024, 512, 128, layout="logical")
    run_case("logical", module, M, decode="lop3", rng=rng, seed=seed)


def test_repeated_launches_keep_workspace_clean():
    """The split-K workspace is zeroed by the kernel itself: back-to-back launches of different shapes."""
    rng, seed = _rng()
    a = make_module(rng, 4096, 512, 128, layout="awq")
    b = make_module(rng, 1024, 2048, 64, layout="gptq")
    for _ in range(3):
        run_case("awq", a, 3, method="skinny", rng=rng, seed=seed)
        run_case("awq", a, 2, method="gemv", rng=rng, seed=seed)
        run_case("gptq", b, 12, method="skinny", rng=rng, seed=seed)
        run_case("gptq", b, 1, method="gemv", rng=rng, seed=seed)


# ---- K splits complete through one 64-bit fixed-point atomic per output (split_add_fx) ------------------

def _workspace_is_clean() -> bool:
    import cupy as cp

    from awqfmt.gpu import gemm

    w = gemm._workspaces[cp.cuda.Device().id]
    return not bool(w.ws.any()) and not bool(w.ws64.any()) and not bool(w.counters.any())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("method,M,config", [("gemv", 1, {"vw": 2, "fl": 8, "pf": 1, "waves": 1}),
                                             ("gemv", 4, {"vw": 2, "fl": 8, "pf": 1, "waves": 1}),
                                             ("skinny", 16, {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}),
                                             ("skinny", 5, {"wc": 1, "nt": 1, "pf": 1, "chk": 1, "splits": 7})])
def test_split_is_deterministic(layout, method, M, config):
    """2-255 K splits add their partial sums as integers (round(v * 2^24) in one 64-bit atomic per output, with
    the arrival count beside them): order-free, so every launch gives the same bits; within 2e-3 of float64, and
    the workspaces are left zero."""
    rng, seed = _rng()
    module = make_module(rng, 4096, 1024, 128, layout=layout)
    x = rng.standard_normal((M, 4096)).astype(np.float16)
    outs, info = _outputs(layout, module, x, method, config, launches=4)
    assert 2 <= info["grid"][1] <= 255, info
    ref = x.astype(np.float64) @ module.dequantize(np.float64)
    for got in outs:
        assert np.isfinite(got).all(), f"unwritten or non-finite output (seed={seed})"
        rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        assert rel <= TOL, f"relative error {rel:.3g} (seed={seed})"
    assert all(np.array_equal(outs[0], o) for o in outs[1:]), f"launches differ (seed={seed})"
    assert _workspace_is_clean()


@pytest.mark.parametrize("layout", ["awq", "gptq"])
@pytest.mark.parametrize("method,config", [("gemv", {"vw": 2, "fl": 8, "pf": 1, "rpt": 128}),
                                           ("skinny", {"wc": 1, "nt": 1, "pf": 2, "chk": 0, "splits": 2})])
def test_split_large_partials_go_through_fp32(layout, method, config):
    """A partial sum beyond +-32768 would not fit the fixed-point field: it is added in fp32 instead and counted
    as special, and the completing thread adds the fp32 word. Two splits (2048 rows each); x = 5 on the first
    half (zeros 1, scales 0.5) make that half's partial ~33300 +- 500: most columns take the fp32 path, some not."""
    rng, seed = _rng()
    K, N = 4096, 512
    module = make_module(rng, K, N, 128, layout=layout)
    module.zeros[:] = 1  # stored 0 for GPTQ v1 (z - 1), 1 elsewhere: q - z >= -1
    module.scales[:] = np.float16(0.5)
    x = rng.standard_normal((1, K)).astype(np.float16)
    x[0, :K // 2] = np.float16(5.0)
    (got,), info = _outputs(layout, module, x, method, config)
    assert info["grid"][1] == 2, info
    W = module.dequantize(np.float64)
    first = x[:, :K // 2].astype(np.float64) @ W[:K // 2]
    assert (np.abs(first) > 32768).any() and (np.abs(first) <= 32768).any(), "the test must mix both paths"
    ref = x.astype(np.float64) @ W
    assert np.isfinite(got).all(), f"unwritten or non-finite output (seed={seed})"
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert rel <= TOL, f"relative error {rel:.3g} (seed={seed})"
    assert _workspace_is_clean()


@pytest.mark.parametrize("method", ["gemv", "skinny"])
def test_split_propagates_inf_and_nan(method):
    """inf in x: outputs +-inf where the weight is non-zero and NaN where it is zero (0 * inf), as float64 says;
    NaN in x: every output of that token NaN. The non-finite partials take the fp32 path."""
    rng, seed = _rng()
    module = make_module(rng, 4096, 512, 128)
    x = rng.standard_normal((2, 4096)).astype(np.float16)
    x[0, 10] = np.inf
    x[1, 3000] = np.nan
    config = {"wc": 1, "nt": 1, "pf": 1, "chk": 0, "splits": 4} if method == "skinny" else None
    (got,), info = _outputs("awq", module, x, method, config)
    assert info["grid"][1] >= 2, info
    with np.errstate(invalid="ignore", over="ignore"):
        ref = x.astype(np.float64) @ module.dequantize(np.float64)
    assert np.array_equal(np.isnan(got), np.isnan(ref)), f"NaN pattern differs (seed={seed})"
    inf = np.isinf(ref)
    assert inf.any() and np.array_equal(got[inf], ref[inf]), f"inf outputs differ (seed={seed})"
    assert _workspace_is_clean()


@pytest.mark.parametrize("method,K,config", [("gemv", 258 * 128, {"vw": 2, "fl": 8, "pf": 1, "rpt": 8}),
                                             ("skinny", 516 * 128, {"wc": 1, "nt": 1, "pf": 1, "chk": 0, "splits": 258})])
def test_more_than_255_splits_use_the_tile_counter(method, K, config):
    """Beyond 255 K splits the arrival count would not fit its 8 bits: those launches complete through the fp32
    workspace and the tile counter, as before."""
    rng, seed = _rng()
    module = make_module(rng, K, 256, 128)
    x = rng.standard_normal((1, module.K)).astype(np.float16)
    (got,), info = _outputs("awq", module, x, method, config)
    assert info["grid"][1] == 258, info
    ref = x.astype(np.float64) @ module.dequantize(np.float64)
    assert np.isfinite(got).all()
    rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
    assert rel <= TOL, f"relative error {rel:.3g} (seed={seed})"
    assert _workspace_is_clean()


def test_awq_and_logical_agree_on_identical_data():
    import cupy as cp

    rng, seed = _rng()
    module = make_module(rng, 2048, 1024, 128)
    x = rng.standard_normal((4, 2048)).astype(np.float16)
    ys = []
    for layout, decode in (("awq", None), ("logical", "shift"), ("logical", "lop3")):
        tensors = _tensors(layout, module)
        ys.append(cp.asnumpy(gemm_packed(layout, tensors, x, group_size=128, decode=decode, check=True)).astype(np.float64))
    for y in ys[1:]:
        assert np.linalg.norm(y - ys[0]) / np.linalg.norm(ys[0]) < 1e-3, f"seed={seed}"


def test_errors_are_clear():
    rng, _ = _rng()
    module = make_module(rng, 256, 64, 32)
    tensors = _tensors("awq", module)
    x = np.zeros((1, 256), np.float16)
    with pytest.raises(GemmError):
        gemm_packed("compressed-tensors", tensors, x, group_size=32)
    with pytest.raises(GemmError):
        gemm_packed("awq", tensors, x, bits=8, group_size=32)
    with pytest.raises(GemmError):
        gemm_packed("awq", tensors, np.zeros((1, 100), np.float16), group_size=32)
    with pytest.raises(GemmError):
        gemm_packed("awq", tensors, x, group_size=48)
    with pytest.raises(GemmError, match="at most"):
        gemm_packed("awq", tensors, np.zeros((GEMV_MAX_M + 1, 256), np.float16), group_size=32, method="gemv")
    with pytest.raises(GemmError):
        gemm_packed("awq", tensors, x, group_size=32, method="gemv", config={"vw": 3})
    with pytest.raises(GemmError, match=r"bad skinny config .*warps 8/16"):
        gemm_packed("awq", tensors, x, group_size=32, method="skinny", config={"wc": 1, "nt": 2, "pf": 1, "warps": 12})


# ---- programmatic dependent launch: kernels that start while the one before them is still finishing ------

PDL_CHAIN_CASES = [("gemv", 1, None), ("gemv", 2, {"vw": 2, "fl": 4, "pf": 1, "waves": 1}),
                   ("gemv", 1, {"vw": 2, "fl": 8, "pf": 1, "waves": 1, "l2pf": 1}),
                   ("skinny", 16, {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}),
                   ("skinny", 16, {"wc": 1, "nt": 2, "pf": 2, "chk": 0}), ("skinny", 5, {"wc": 1, "nt": 1, "pf": 1, "chk": 0})]


def _square_module(rng, K, layout):
    """K x K weights scaled so that y = x @ W keeps about the size of x (a chain of them stays in fp16 range)."""
    codes = rng.integers(0, 16, (K, K), dtype=np.uint8)
    # zeros at the codes' mean: no column-wide offset that a chain of products would pile up
    zeros = rng.integers(7, 9, (K // 128, K)).astype(np.uint16)
    s = ((rng.random((K // 128, K)) * 0.5 + 0.75) / (6.0 * np.sqrt(K))).astype(np.float16)
    return LogicalModule(bits=4, group_size=128, codes=codes, zeros=zeros, scales=s, scale_dtype="F16", g_idx=None)


def _pdl_chain(layout, method, M, config, K, steps, use_graph, pingpong):
    """x -> y1 -> y2 ...: each step reads the output the step before wrote, all launched back to back (no sync);
    every third step goes through a CuPy kernel first (y * 1: a plain launch the PDL launch must wait for too).
    distinct (pingpong False): each step writes its own NaN-poisoned buffer, all checked; pingpong: two buffers
    in turn, so each step overwrites what the step before it read, and the last output is checked against the
    float64 chain rounded to fp16 after every step."""
    import cupy as cp

    from awqfmt.gpu.gemm import prepare

    rng, seed = _rng()
    module = _square_module(rng, K, layout)
    p = prepare(layout, _tensors(layout, module), group_size=128)
    x0 = cp.asarray(rng.standard_normal((M, K)).astype(np.float16))
    outs = [cp.full((M, K), cp.nan, dtype=cp.float16) for _ in range(2 if pingpong else steps)]
    tmps = [cp.full((M, K), cp.nan, dtype=cp.float16) for _ in range(steps)]  # no allocation inside a capture
    info: dict = {}
    # compile and allocate the split-K workspace before any capture
    gemm_packed(layout, p, x0, group_size=128, method=method, config=config, out=tmps[0])

    def chain():
        src = x0
        for i in range(steps):
            if i % 3 == 2:
                cp.multiply(src, 1, out=tmps[i])
                src = tmps[i]
            out = outs[i % len(outs)]
            gemm_packed(layout, p, src, group_size=128, method=method, config=config, out=out, info=info)
            src = out

    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        if use_graph:
            stream.begin_capture()
            chain()
            stream.end_capture().launch(stream)
        else:
            chain()
        stream.synchronize()
    W = module.dequantize(np.float64)
    where = f"layout={layout} method={method} M={M} config={config} graph={use_graph} pingpong={pingpong} seed={seed}"
    assert info.get("pdl") is True, f"the launch did not use PDL: {info} ({where})"
    prev = cp.asnumpy(x0).astype(np.float64)
    for i in range(steps):
        ref = prev @ W
        if pingpong and i < steps - 1:
            prev = ref.astype(np.float16).astype(np.float64)
            continue
        got = cp.asnumpy(outs[i % len(outs)]).astype(np.float64)
        assert np.isfinite(got).all(), f"step {i}: non-finite output (a stale or unwritten read): {where}"
        rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
        tol = 3 * TOL if pingpong else TOL  # pingpong: six steps of fp16 rounding on both sides
        assert rel <= tol, f"step {i}: relative error {rel:.3g} > {tol}: {where}"
        prev = got


def _cc() -> int:
    import cupy as cp

    return int(cp.cuda.Device().compute_capability)


@pytest.mark.parametrize("method,M,config", PDL_CHAIN_CASES)
@pytest.mark.parametrize("layout", ["awq", "gptq"])
@pytest.mark.parametrize("use_graph", [False, True])
@pytest.mark.parametrize("pingpong", [False, True])
def test_pdl_chain_reads_each_steps_output(method, M, config, layout, use_graph, pingpong):
    if _cc() < 90:
        pytest.skip("PDL needs compute capability 9.0")
    _pdl_chain(layout, method, M, config, 4096, 6, use_graph, pingpong)


def test_pdl_only_for_prepared_modules(monkeypatch):
    """A module uploaded inside gemm_packed may still be in flight (its copies are kernels): launched plainly;
    AWQFMT_PDL=0 turns PDL off for prepared modules too."""
    from awqfmt.gpu.gemm import prepare

    rng, _ = _rng()
    module = make_module(rng, 1024, 512, 128)
    tensors = _tensors("awq", module)
    x = rng.standard_normal((1, 1024)).astype(np.float16)
    info: dict = {}
    gemm_packed("awq", tensors, x, group_size=128, method="gemv", info=info)
    assert info["pdl"] is False
    p = prepare("awq", tensors, group_size=128)
    gemm_packed("awq", p, x, group_size=128, method="gemv", info=info)
    assert info["pdl"] is (_cc() >= 90)
    monkeypatch.setenv("AWQFMT_PDL", "0")
    gemm_packed("awq", p, x, group_size=128, method="skinny", info=info)
    assert info["pdl"] is False


# ---- split-K workspaces: one per concurrently running stream -------------------------------------------

def test_concurrent_streams_with_their_own_workspaces():
    """Two streams launch split-K GEMMs (GEMV and skinny, several K splits each) back to back without any sync
    between them, each reducing through its own Workspace: every output must match its reference."""
    import cupy as cp

    from awqfmt.gpu import Workspace
    from awqfmt.gpu.gemm import prepare

    rng, seed = _rng()
    mods = [make_module(rng, 8192, 512, 128), make_module(rng, 4096, 1024, 64)]
    preps = [prepare("awq", _tensors("awq", m), group_size=m.group_size) for m in mods]
    cases = [(0, 1, "gemv", {"vw": 1, "fl": 8, "pf": 1, "waves": 4}), (1, 16, "skinny", {"wc": 1, "nt": 2, "pf": 1,
                                                                                       "chk": 0, "splits": 8})]
    streams = [cp.cuda.Stream(non_blocking=True) for _ in cases]
    spaces = [Workspace() for _ in cases]
    xs = [[rng.standard_normal((M, mods[i].K)).astype(np.float16) for _ in range(12)] for i, M, _, _ in cases]
    outs = [[cp.full((M, mods[i].N), cp.nan, dtype=cp.float16) for _ in range(12)] for i, M, _, _ in cases]
    xd = [[cp.asarray(x) for x in row] for row in xs]
    cp.cuda.Device().synchronize()
    for step in range(12):
        for c, (i, M, method, cfg) in enumerate(cases):
            with streams[c]:
                gemm_packed("awq", preps[i], xd[c][step], group_size=mods[i].group_size, method=method, config=cfg,
                            out=outs[c][step], workspace=spaces[c])
    cp.cuda.Device().synchronize()
    for c, (i, M, method, _) in enumerate(cases):
        W = mods[i].dequantize(np.float64)
        for step in range(12):
            got = cp.asnumpy(outs[c][step]).astype(np.float64)
            ref = xs[c][step].astype(np.float64) @ W
            assert np.isfinite(got).all(), f"{method} step {step}: unwritten output (seed={seed})"
            rel = np.linalg.norm(got - ref) / np.linalg.norm(ref)
            assert rel <= TOL, f"{method} step {step}: relative error {rel:.3g} (seed={seed})"
    assert all(ws.ws is not None and not bool(ws.ws.any()) and not bool(ws.ws64.any()) for ws in spaces), \
        "a workspace was left non-zero"


def test_workspace_argument_is_checked():
    rng, _ = _rng()
    module = make_module(rng, 1024, 512, 128)
    tensors = _tensors("awq", module)
    with pytest.raises(GemmError, match="awqfmt.gpu.Workspace"):
        gemm_packed("awq", tensors, rng.standard_normal((1, 1024)).astype(np.float16), group_size=128,
                    workspace=object())
