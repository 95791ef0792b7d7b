# pruning_plot.awk - one SVG figure of a pruning setting from the lines of
# bench_pruning (tab-separated, as bench/results keeps them): beat-label
# agreement with the unpruned model (left) and macro-F1 (right) against
# the multiply-accumulate ratio, one series per method, refit on, mean and
# standard deviation over seeds as error bars.
#
#   awk -F '\t' -v setting=general -v stage=pruned -f bench/pruning_plot.awk \
#       LINES... > figure.svg
#
# Plain SVG 1.1 written by hand, so that the docs need no plotting package.
# Limitation: the axes are linear and sized to the data; a method whose
# points sit on top of another's is drawn over it, shifted sideways by a
# few pixels.

function add(k, i, v) { s[k, i] += v; q[k, i] += v * v }
function mean(k, i) { return s[k, i] / n[k] }
function sd(k, i,   m, v) {
    m = mean(k, i); v = q[k, i] / n[k] - m * m
    return v > 0 && n[k] > 1 ? sqrt(v * n[k] / (n[k] - 1)) : 0
}

$1 != setting || $2 != stage { next }
$4 == "none" { base_f1 = $11; base_macs = $8; next }
$5 == "on" {
    k = $3 "\t" $4
    if (!(k in n)) order[++keys] = k
    n[k]++
    macs[k] = $8
    add(k, 1, 100 * $16)
    add(k, 2, $11)
}

# Pixel coordinates of panel p (0 left, 1 right).
function px(p, x) { return left[p] + (x - x_lo) / (x_hi - x_lo) * pw }
function py(p, y) { return top + ph - (y - y_lo[p]) / (y_hi[p] - y_lo[p]) * ph }

function axes(p, title, step,   v, t) {
    printf "<rect x='%d' y='%d' width='%d' height='%d' fill='none' " \
           "stroke='#444'/>\n", left[p], top, pw, ph
    printf "<text x='%d' y='%d' text-anchor='middle' font-weight='bold'>" \
           "%s</text>\n", left[p] + pw / 2, top - 10, title
    for (v = x_lo; v <= x_hi + 1e-9; v += 0.1) {
        t = px(p, v)
        printf "<line x1='%.1f' y1='%d' x2='%.1f' y2='%d' stroke='#ddd'/>\n",
               t, top, t, top + ph
        printf "<text x='%.1f' y='%d' text-anchor='middle'>%.1f</text>\n",
               t, top + ph + 16, v
    }
    printf "<text x='%d' y='%d' text-anchor='middle'>MACs of the pruned " \
           "model / unpruned</text>\n", left[p] + pw / 2, top + ph + 34
    for (v = y_lo[p]; v <= y_hi[p] + 1e-9; v += step) {
        t = py(p, v)
        printf "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#ddd'/>\n",
               left[p], t, left[p] + pw, t
        printf "<text x='%d' y='%.1f' text-anchor='end'>%s</text>\n",
               left[p] - 5, t + 4, (step < 1 ? sprintf("%.2f", v) : \
               sprintf("%d", v))
    }
}

function hline(p, y, label,   t) {
    if (y < y_lo[p] || y > y_hi[p]) return
    t = py(p, y)
    printf "<line x1='%d' y1='%.1f' x2='%d' y2='%.1f' stroke='#888' " \
           "stroke-dasharray='5,4'/>\n", left[p], t, left[p] + pw, t
    if (label != "")
        printf "<text x='%d' y='%.1f' fill='#555'>%s</text>\n",
               left[p] + 4, t - 4, label
}

function marker(m, cx, cy) {
    if (m ~ /^ising/)
        printf "<circle cx='%.1f' cy='%.1f' r='4' fill='%s'/>\n", cx, cy,
               color[m]
    else
        printf "<rect x='%.1f' y='%.1f' width='7' height='7' fill='%s'/>\n",
               cx - 3.5, cy - 3.5, color[m]
}

function point(p, m, x, y, e,   cx, cy) {
    cx = px(p, x) + shift[m]; cy = py(p, y)
    printf "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='%s'/>\n",
           cx, py(p, y - e), cx, py(p, y + e), color[m]
    marker(m, cx, cy)
}

END {
    if (keys == 0) {
        print "pruning_plot: no lines for " setting > "/dev/stderr"
        exit 1
    }
    split("ising-kernel ising-filter l1 random coreset contrib", methods, " ")
    split("#1f4e9c #3fa9d6 #c0392b #7f7f7f #e67e22 #27ae60", colors, " ")
    for (i = 1; i <= 6; i++) {
        color[methods[i]] = colors[i]; shift[methods[i]] = (i - 3.5) * 3
    }
    pw = 330; ph = 250; top = 40; left[0] = 60; left[1] = 470

    # Axis ranges from the data: agreement down to the lowest mean minus
    # its spread, F1 around the points and the unpruned model's.
    x_lo = 0; x_hi = 0.1; a_lo = 100; f_lo = base_f1; f_hi = base_f1
    for (i = 1; i <= keys; i++) {
        k = order[i]; r = macs[k] / base_macs
        if (r > x_hi) x_hi = r
        if (mean(k, 1) - sd(k, 1) < a_lo) a_lo = mean(k, 1) - sd(k, 1)
        if (mean(k, 2) - sd(k, 2) < f_lo) f_lo = mean(k, 2) - sd(k, 2)
        if (mean(k, 2) + sd(k, 2) > f_hi) f_hi = mean(k, 2) + sd(k, 2)
    }
    x_hi = int(x_hi * 10 + 0.999) / 10
    y_lo[0] = int(a_lo / 5) * 5; y_hi[0] = 100
    y_lo[1] = int(f_lo * 20) / 20; y_hi[1] = int(f_hi * 20 + 0.999) / 20
    if (y_hi[1] <= y_lo[1]) y_hi[1] = y_lo[1] + 0.05

    printf "<svg xmlns='http://www.w3.org/2000/svg' width='860' height='370' " \
           "font-family='sans-serif' font-size='12'>\n"
    printf "<rect width='860' height='370' fill='white'/>\n"
    axes(0, "label agreement with the unpruned model (%)", 5)
    axes(1, sprintf("macro-F1 (dashed: unpruned model, %.3f)", base_f1),
         0.05)
    hline(0, 98, "goal at keep 0.75: 98 %")
    hline(0, 95, "goal at keep 0.5: 95 %")
    hline(1, base_f1, "")
    for (i = 1; i <= keys; i++) {
        k = order[i]; split(k, f, "\t"); r = macs[k] / base_macs
        point(0, f[2], r, mean(k, 1), sd(k, 1))
        point(1, f[2], r, mean(k, 2), sd(k, 2))
    }

    # Legend under the panels.
    for (i = 1; i <= 6; i++) {
        x = 60 + (i - 1) * 130
        marker(methods[i], x, 345)
        printf "<text x='%d' y='349'>%s</text>\n", x + 10, methods[i]
    }
    printf "</svg>\n"
}
