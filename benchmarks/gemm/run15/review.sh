# Session 12 review: the GEMV l2pf and PDL-chain GPU tests after _l2pf lost its (always true) pointer check, and
# the run-15 probes after their setup was folded into probe10._module / probe15.cell_inputs (do they still run).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
mkdir -p $OUT/review
{ echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  timeout 150 python3 -m pytest -v tests/gpu/test_gemm_gpu.py -k "l2_prefetch or pdl_chain or gemv_configs" 2>&1 | grep -v -i warn; } > $OUT/review/tests.txt
tail -1 $OUT/review/tests.txt; grep -E "FAIL|Error" $OUT/review/tests.txt | head -3
cd benchmarks/gemm
for a in "probe15.py" "probe15b.py c" "probe15d.py" "probe15g.py"; do
  set -- $a; OUT=$OUT/review timeout 120 python3 $a 2>&1 | grep -v -i warn > $OUT/review/${1%.py}${2:-}.txt; echo "$a rc=$?"; tail -2 $OUT/review/${1%.py}${2:-}.txt
done
