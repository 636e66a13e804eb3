# Run 10e: why is the shared-memory kernel slow? ncu stall reasons, occupancy, smem config.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
P=benchmarks/gemm/probe10.py
MET="regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio,dram__bytes_read.sum,gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,launch__occupancy_limit_shared_mem,launch__occupancy_limit_registers,launch__shared_mem_config_size,launch__shared_mem_per_block_dynamic,launch__registers_per_thread,smsp__issue_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,smsp__inst_executed.sum,lts__t_sectors_srcunit_tex_op_read.sum"
run() { ncu -k regex:w4a16 --launch-skip 4 --launch-count 1 --metrics $MET python3 $P one "$@" 2>&1 | grep -E "^\s+(smsp|dram|lts|l1tex|sm__|gpu__|launch)" | awk '$NF+0 > 0.05 || /dram|lts|l1tex|sm__|gpu__|launch|inst_exec/' ; }
echo "## ldsm M=16 8192x28672 st4"; run --kind skinny --K 8192 --N 28672 --M 16 --cfg '{"ldsm":4,"nt":2}'
echo "## ldsm M=1 8192x28672 st4"; run --kind skinny --K 8192 --N 28672 --M 1 --cfg '{"ldsm":4,"nt":1}'
echo "## reg M=16 8192x28672"; run --kind skinny --K 8192 --N 28672 --M 16 --cfg '{"wc":1,"nt":2,"pf":1,"chk":0}'
