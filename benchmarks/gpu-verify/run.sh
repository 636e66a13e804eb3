# GPU verify run (session 13): the GPU verify tests, and verify --backend cupy against the original MiniLM weights
# (the fixture reference file's .orig tensors) on the H100. Writes into $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
{ echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  python3 -m pytest -q tests/gpu/test_verify_gpu.py tests/test_verify_reference.py 2>&1 | grep -v -i warn | tail -3; } > $OUT/gpu-verify-tests.txt
cat $OUT/gpu-verify-tests.txt
COLUMNS=160 python3 -m awqfmt.cli verify awqfmt/data/minilm_awq_g128 --backend cupy --reference tests/fixtures/minilm_awq_g128.ref.safetensors > $OUT/verify-minilm-reference-cupy.txt 2>&1; echo "exit $?" >> $OUT/verify-minilm-reference-cupy.txt
tail -16 $OUT/verify-minilm-reference-cupy.txt
