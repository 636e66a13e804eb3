# Run 10c: stall reasons, pipe use and DRAM/L2 bytes of the FAST-load skinny kernel at M=16 (ncu).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
P=benchmarks/gemm/probe10.py
MET="regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio,dram__bytes_read.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_sectors_srcunit_tex_op_read_lookup_hit.sum,l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum"
run() { ncu -k regex:w4a16 --launch-skip 4 --launch-count 1 --metrics $MET python3 $P one "$@" 2>&1 | grep -E "^\s+(smsp|dram|lts|l1tex|sm__|gpu__)" | awk '$NF+0 > 0.05 || /dram|lts|l1tex|sm__|gpu__/' ; }
for s in "8192 28672" "28672 8192" "8192 8192" "4096 4096"; do set -- $s
echo "## skinny M=16 K=$1 N=$2 wc1 nt2 pf1 chk0"; run --kind skinny --K $1 --N $2 --M 16 --cfg '{"wc":1,"nt":2,"pf":1,"chk":0}'
done
echo "## gemv M=1 8192x8192"; run --kind gemv --K 8192 --N 8192 --M 1 --cfg '{"vw":2,"fl":8,"pf":1,"waves":1}'
echo "## gemv M=1 4096x4096"; run --kind gemv --K 4096 --N 4096 --M 1 --cfg '{"vw":2,"fl":8,"pf":0,"waves":1}'
