# tally-plot.gp: the plot of `tally bench --plot`: throughput (log scale),
# fairness and latency (p50 and p99, log scale) against workers, one line per
# backend, one column per mode.
#
# `tally bench` writes the data and runs
#   gnuplot -e "datafile='…'; outfile='…'; nseries=N; cpus=C; colors='1 2 …';
#               mode1='threads'; n1=N1; mode2='processes'; subtitle='…'"
#           tally-plot.gp
# datafile holds one block per series (separated by two blank lines): the
# n1 blocks of mode1 first, then those of mode2 (mode2 is '' when there is
# one mode).  A block's first line is its title (the backend), then one line
# per worker count:
#   workers  ops_per_sec_median  ops_per_sec_min  ops_per_sec_max  fairness
#   p50_ns  p99_ns
# (latency of the repeat nearest the median; 0 when sampling was off).
# `colors` gives each block's line type, so a backend has one colour in
# every panel.  Runs with more workers than `cpus` are shaded: oversubscribed.

if (!exists("subtitle")) subtitle = ""
if (!exists("mode2")) mode2 = ""
if (!exists("n1")) n1 = nseries
if (!exists("mode1")) mode1 = ""
ncols = (mode2 eq "") ? 1 : 2
if (outfile[strlen(outfile)-3:] eq ".svg") {
	set terminal svg size 600*ncols+200,1300 dynamic font "sans,11" background "white"
} else {
	set terminal pngcairo size 600*ncols+200,1300 font "sans,10" background "white"
}
set output outfile

# Sixteen colours that stay apart on screen; a backend keeps its colour.
set linetype 1 lc rgb "#1f77b4" lw 2 pt 7
set linetype 2 lc rgb "#d62728" lw 2 pt 5
set linetype 3 lc rgb "#2ca02c" lw 2 pt 9
set linetype 4 lc rgb "#ff7f0e" lw 2 pt 11
set linetype 5 lc rgb "#9467bd" lw 2 pt 13
set linetype 6 lc rgb "#8c564b" lw 2 pt 4
set linetype 7 lc rgb "#e377c2" lw 2 pt 6
set linetype 8 lc rgb "#17becf" lw 2 pt 8
set linetype 9 lc rgb "#7f7f7f" lw 2 pt 10
set linetype 10 lc rgb "#bcbd22" lw 2 pt 12
set linetype 11 lc rgb "#000000" lw 2 pt 14
set linetype 12 lc rgb "#aec7e8" lw 2 pt 1
set linetype 13 lc rgb "#ff9896" lw 2 pt 2
set linetype 14 lc rgb "#98df8a" lw 2 pt 3
set linetype 15 lc rgb "#c5b0d5" lw 2 pt 7
set linetype 16 lc rgb "#c49c94" lw 2 pt 5
set linetype cycle 16

set multiplot layout 3,ncols title "tally bench: ".subtitle font ",12"
set logscale x 2
set xlabel "workers"
set grid xtics ytics mytics lc rgb "#dddddd"
# One key, right of the rightmost panels: a backend has one colour in all.
set key outside right top font ",9"
set object 1 rect from cpus + 0.5, graph 0 to graph 1, graph 1 \
	fc rgb "#f2e6e6" fs solid 1.0 noborder behind
set label 1 "oversubscribed →" at cpus + 0.5, graph 0.03 right \
	textcolor rgb "#aa4444" font ",9"

set logscale y 10
set format y "10^{%L}"
set ylabel "adds per second (median; bars: min–max)"
set title mode1
if (ncols == 2) { unset key }
plot for [i=0:n1-1] datafile index i using 1:2:3:4 with yerrorlines \
	lt word(colors, i+1)+0 title columnheader(1)
if (ncols == 2) {
	set key outside right top font ",9"
	set title mode2
	plot for [i=n1:nseries-1] datafile index i using 1:2:3:4 \
		with yerrorlines lt word(colors, i+1)+0 title columnheader(1)
}

unset logscale y
set format y "%g"
set yrange [0:1.05]
set ylabel "fairness (Jain's index; 1 = equal shares)"
set label 1 at cpus + 0.5, graph 0.97
set title mode1
if (ncols == 2) { unset key }
plot for [i=0:n1-1] datafile index i using 1:5 with linespoints \
	lt word(colors, i+1)+0 title columnheader(1)
if (ncols == 2) {
	set key outside right top font ",9"
	set title mode2
	plot for [i=n1:nseries-1] datafile index i using 1:5 with linespoints \
		lt word(colors, i+1)+0 title columnheader(1)
}

# Latency of one add: p50 solid, p99 dashed, in the backend's colour.
set yrange [*:*]
set logscale y 10
set format y "10^{%L}"
set ylabel "ns per add (p50 solid, p99 dashed)"
set label 1 at cpus + 0.5, graph 0.03
set title mode1
pos(v) = (v > 0 ? v : NaN)
if (ncols == 2) { unset key }
plot for [i=0:n1-1] datafile index i using 1:(pos($6)) with linespoints \
	lt word(colors, i+1)+0 title columnheader(1), \
	for [i=0:n1-1] datafile index i using 1:(pos($7)) with linespoints \
	lt word(colors, i+1)+0 dt 2 notitle
if (ncols == 2) {
	set key outside right top font ",9"
	set title mode2
	plot for [i=n1:nseries-1] datafile index i using 1:(pos($6)) \
		with linespoints lt word(colors, i+1)+0 title columnheader(1), \
		for [i=n1:nseries-1] datafile index i using 1:(pos($7)) \
		with linespoints lt word(colors, i+1)+0 dt 2 notitle
}
unset multiplot
