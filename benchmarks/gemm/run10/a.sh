python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
P=benchmarks/gemm/probe10.py
python3 $P floor 2>&1 | tee $OUT/floor.txt
python3 $P gemv --shapes 4096x4096,8192x8192 --configs '[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":8,"pf":1,"waves":2},{"vw":2,"fl":8,"pf":1,"waves":0.5},{"vw":2,"fl":8,"pf":1,"target_blocks":528},{"vw":2,"fl":8,"pf":1,"target_blocks":1056},{"vw":4,"fl":8,"pf":0,"waves":1},{"vw":4,"fl":8,"pf":0,"waves":2},{"vw":1,"fl":8,"pf":1,"waves":1},{"vw":1,"fl":8,"pf":1,"waves":2},{"vw":1,"fl":8,"pf":1,"waves":4},{"vw":2,"fl":4,"pf":1,"waves":1},{"vw":2,"fl":8,"pf":0,"waves":1},{"method":"skinny","wc":2,"nt":1,"pf":0,"chk":1}]' 2>&1 | tee $OUT/gemv.txt
python3 $P cublas --ms 4096 2>&1 | tee $OUT/cublas.txt
NCU="ncu -k regex:w4a16 --launch-skip 4 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats"
$NCU python3 $P one --kind skinny --K 8192 --N 28672 --M 16 --cfg '{"wc":2,"nt":2,"pf":1,"chk":0,"sm_mult":1}' > $OUT/ncu-skinny-m16-8192x28672.txt 2>&1
$NCU python3 $P one --kind skinny --K 8192 --N 8192 --M 16 --cfg '{"wc":1,"nt":2,"pf":1,"chk":0}' > $OUT/ncu-skinny-m16-8192x8192.txt 2>&1
$NCU python3 $P one --kind gemv --K 8192 --N 8192 --M 1 --cfg '{"vw":2,"fl":8,"pf":1,"waves":1}' > $OUT/ncu-gemv-m1-8192x8192.txt 2>&1
$NCU python3 $P one --kind gemv --K 4096 --N 4096 --M 1 --cfg '{"vw":2,"fl":8,"pf":1,"waves":1}' > $OUT/ncu-gemv-m1-4096x4096.txt 2>&1
for f in $OUT/ncu-*.txt; do echo "## $f"; grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\)|Issue Slots Busy|Issued Warp|No Eligible|Achieved Occupancy|Registers Per|Stall|Waves Per SM|Block Limit|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Active Warps" $f | head -40; done
