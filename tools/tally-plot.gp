# tally-plot.gp: the plot of `tally bench --plot`: throughput (log scale) and
# fairness against workers, one line per backend and mode.
#
# `tally bench` writes the data and runs
#   gnuplot -e "datafile='…'; outfile='…'; nseries=N; cpus=C; subtitle='…'" tally-plot.gp
# datafile holds one block per series (separated by two blank lines); a
# block's first line is its title, then one line per worker count:
#   workers  ops_per_sec_median  ops_per_sec_min  ops_per_sec_max  fairness
# Runs with more workers than `cpus` (online CPUs) are shaded: oversubscribed.

if (!exists("subtitle")) subtitle = ""
if (outfile[strlen(outfile)-3:] eq ".svg") {
	set terminal svg size 1000,900 dynamic font "sans,11" background "white"
} else {
	set terminal pngcairo size 1000,900 font "sans,10" background "white"
}
set output outfile

set multiplot layout 2,1 title "tally bench: ".subtitle font ",12"
set logscale x 2
set xlabel "workers"
set grid xtics ytics mytics lc rgb "#dddddd"
set key outside right top
set object 1 rect from cpus + 0.5, graph 0 to graph 1, graph 1 \
	fc rgb "#f2e6e6" fs solid 1.0 noborder behind
set label 1 "oversubscribed\n(workers > ".cpus." CPUs)" at graph 0.99, graph 0.95 right textcolor rgb "#aa4444"

set logscale y 10
set format y "10^{%L}"
set ylabel "adds per second (median; bars: min–max)"
plot for [i=0:nseries-1] datafile index i using 1:2:3:4 \
	with yerrorlines lw 2 pointsize 1 title columnheader(1)

unset logscale y
set format y "%g"
set label 1 at graph 0.99, graph 0.08
set yrange [0:1.05]
set ylabel "fairness (Jain's index; 1 = equal shares)"
plot for [i=0:nseries-1] datafile index i using 1:5 \
	with linespoints lw 2 pointsize 1 title columnheader(1)
unset multiplot
