/* svg.c - a line chart and a stacked bar chart as standalone SVG files:
 * fixed layout (plot on the left, legend on the right), round ticks, text
 * escaped, so a browser shows them without any plotting dependency. */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "svg.h"

/* Canvas and plot area (user units of the viewBox). */
enum { W = 800, H = 460, LEFT = 84, RIGHT = W - 216, TOP = 58, BOTTOM = H - 66 };

static const char *const palette[] = {
    /* Okabe-Ito: distinguishable with the common colour-vision deficiencies */
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999933",
};
#define NPALETTE ((int)(sizeof palette / sizeof palette[0]))

const char *svg_colour(int i)
{
    return palette[(i < 0 ? -i : i) % NPALETTE];
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static int utf8_len(const unsigned char *s)
{
    int n = s[0] < 0x80 ? 1 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : s[0] >= 0xE0 && s[0] < 0xF0 ? 3
            : s[0] >= 0xF0 && s[0] < 0xF5 ? 4 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

void svg_escape(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = utf8_len(p);
        if (n == 0 || (n == 1 && *p < 0x20)) { /* not allowed in XML 1.0 text */
            fputc('?', f);
            p++;
            continue;
        }
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fwrite(p, 1, (size_t)n, f);
        }
        p += n;
    }
}

int svg_nice_ticks(double lo, double hi, int target, double *first, double *last, double *step)
{
    if (!(hi > lo)) { /* one value (or none): give it some room */
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1;
        lo -= pad;
        hi += pad;
    }
    double raw = (hi - lo) / (target > 1 ? target : 1);
    double mag = pow(10, floor(log10(raw)));
    double norm = raw / mag;
    *step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
    *first = floor(lo / *step + 1e-9) * *step;
    *last = ceil(hi / *step - 1e-9) * *step;
    return (int)lround((*last - *first) / *step) + 1;
}

/* Decimals that show every tick of `step` exactly. */
static int tick_decimals(double step)
{
    int d = (int)-floor(log10(step) + 1e-9);
    return d > 0 ? d : 0;
}

typedef struct frame {
    double x0, x1, y0, y1; /* data range mapped onto the plot area */
} frame;

static double px(const frame *fr, double x)
{
    return LEFT + (x - fr->x0) / (fr->x1 - fr->x0) * (RIGHT - LEFT);
}

static double py(const frame *fr, double y)
{
    return BOTTOM - (y - fr->y0) / (fr->y1 - fr->y0) * (BOTTOM - TOP);
}

static void text(FILE *f, double x, double y, const char *anchor, const char *extra,
                 const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y, anchor, extra);
    svg_escape(f, s);
    fputs("</text>\n", f);
}

static void begin(FILE *f, const char *title)
{
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" "
               "height=\"%d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" "
               "font-size=\"13\" fill=\"#222\">\n<title>",
            W, H, W, H);
    svg_escape(f, title);
    fprintf(f, "</title>\n<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", W,
            H);
    text(f, (LEFT + RIGHT) / 2.0, 30, "middle", " font-size=\"17\" font-weight=\"bold\"", title);
}

/* Axis lines, grid, tick labels and axis titles. */
static void axes(FILE *f, const frame *fr, double xstep, double ystep, int xticks,
                 const char *xlabel, const char *ylabel)
{
    char buf[64];
    int yd = tick_decimals(ystep), xd = tick_decimals(xstep);
    long ny = lround((fr->y1 - fr->y0) / ystep), nx = lround((fr->x1 - fr->x0) / xstep);
    fputs("<g stroke=\"#e3e3e3\" stroke-width=\"1\">\n", f);
    for (long i = 0; i <= ny; i++)
        fprintf(f, "<line x1=\"%d\" y1=\"%.2f\" x2=\"%d\" y2=\"%.2f\"/>\n", LEFT,
                py(fr, fr->y0 + (double)i * ystep), RIGHT, py(fr, fr->y0 + (double)i * ystep));
    fputs("</g>\n<g font-size=\"12\">\n", f);
    for (long i = 0; i <= ny; i++) {
        double y = fr->y0 + (double)i * ystep;
        snprintf(buf, sizeof buf, "%.*f", yd, fabs(y) < ystep * 1e-6 ? 0.0 : y);
        text(f, LEFT - 8, py(fr, y) + 4, "end", "", buf);
    }
    for (long i = 0; xticks && i <= nx; i++) {
        double x = fr->x0 + (double)i * xstep;
        snprintf(buf, sizeof buf, "%.*f", xd, fabs(x) < xstep * 1e-6 ? 0.0 : x);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\" stroke=\"#333\"/>\n",
                px(fr, x), BOTTOM, px(fr, x), BOTTOM + 5);
        text(f, px(fr, x), BOTTOM + 19, "middle", "", buf);
    }
    fputs("</g>\n", f);
    fprintf(f, "<g stroke=\"#333\" stroke-width=\"1.2\"><line x1=\"%d\" y1=\"%d\" x2=\"%d\" "
               "y2=\"%d\"/><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\"/></g>\n",
            LEFT, BOTTOM, RIGHT, BOTTOM, LEFT, TOP, LEFT, BOTTOM);
    text(f, (LEFT + RIGHT) / 2.0, H - 22, "middle", " font-size=\"14\"", xlabel);
    fprintf(f, "<text transform=\"translate(22 %.1f) rotate(-90)\" text-anchor=\"middle\" "
               "font-size=\"14\">",
            (TOP + BOTTOM) / 2.0);
    svg_escape(f, ylabel);
    fputs("</text>\n", f);
}

/* ---- line chart ---- */

static void data_range(const svg_line_chart *c, double *xlo, double *xhi, double *ylo,
                       double *yhi)
{
    *xlo = *ylo = INFINITY;
    *xhi = *yhi = -INFINITY;
    for (int s = 0; s < c->nseries; s++)
        for (int i = 0; i < c->series[s].n; i++) {
            double x = c->series[s].x[i], y = c->series[s].y[i];
            if (!isfinite(x) || !isfinite(y))
                continue;
            *xlo = fmin(*xlo, x);
            *xhi = fmax(*xhi, x);
            *ylo = fmin(*ylo, y);
            *yhi = fmax(*yhi, y);
        }
    if (!(*xlo <= *xhi)) { /* nothing to draw: still a sensible empty frame */
        *xlo = 1;
        *xhi = 2;
        *ylo = c->ymin;
        *yhi = c->ymax;
    }
}

static const char *dash(int i)
{
    return (i / NPALETTE) % 2 ? " stroke-dasharray=\"6 4\"" : "";
}

static void series(FILE *f, const frame *fr, const svg_series *s, int i)
{
    int k = 0;
    for (int j = 0; j < s->n; j++)
        k += isfinite(s->x[j]) && isfinite(s->y[j]);
    if (!k) /* no line at all rather than an empty one (some viewers object) */
        return;
    fprintf(f, "<g class=\"series\">\n<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s "
               "points=\"",
            svg_colour(i), dash(i));
    k = 0;
    for (int j = 0; j < s->n; j++)
        if (isfinite(s->x[j]) && isfinite(s->y[j]))
            fprintf(f, "%s%.2f,%.2f", k++ ? " " : "", px(fr, s->x[j]), py(fr, s->y[j]));
    fputs("\"/>\n", f);
    for (int j = 0; j < s->n; j++) {
        if (!isfinite(s->x[j]) || !isfinite(s->y[j]))
            continue;
        /* the tooltip as a group's first child: renderers that ignore
         * <title> inside a shape may drop the shape */
        fputs("<g><title>", f);
        svg_escape(f, s->name);
        fprintf(f, ": %g, %.4g</title><circle cx=\"%.2f\" cy=\"%.2f\" r=\"3.5\" "
                   "fill=\"%s\"/></g>\n",
                s->x[j], s->y[j], px(fr, s->x[j]), py(fr, s->y[j]), svg_colour(i));
    }
    fputs("</g>\n", f);
}

static void line_legend(FILE *f, const svg_line_chart *c)
{
    for (int i = 0; i < c->nseries; i++) {
        double y = TOP + 10 + 24.0 * i;
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"%s\" "
                   "stroke-width=\"2\"%s/><circle cx=\"%d\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
                RIGHT + 18, y, RIGHT + 46, y, svg_colour(i), dash(i), RIGHT + 32, y,
                svg_colour(i));
        text(f, RIGHT + 54, y + 4.5, "start", " font-size=\"12\"", c->series[i].name);
    }
}

void svg_write_line_chart(FILE *f, const svg_line_chart *c)
{
    double xlo, xhi, ylo, yhi, xstep, ystep;
    frame fr;
    data_range(c, &xlo, &xhi, &ylo, &yhi);
    svg_nice_ticks(xlo, xhi, 8, &fr.x0, &fr.x1, &xstep);
    if (c->integer_x && xstep < 1) { /* epochs: no ticks between whole numbers */
        xstep = 1;
        fr.x0 = floor(xlo) - (xlo == xhi);
        fr.x1 = ceil(xhi) + (xlo == xhi);
    }
    svg_nice_ticks(ylo, yhi, 6, &fr.y0, &fr.y1, &ystep);
    while (fr.y0 < c->ymin - 1e-9 * ystep) /* stay inside the meaningful range */
        fr.y0 += ystep;
    while (fr.y1 > c->ymax + 1e-9 * ystep)
        fr.y1 -= ystep;
    if (!(fr.y1 > fr.y0)) {
        fr.y0 = c->ymin;
        fr.y1 = c->ymax;
        ystep = (fr.y1 - fr.y0) / 5;
    }
    begin(f, c->title);
    axes(f, &fr, xstep, ystep, 1, c->xlabel, c->ylabel);
    for (int i = 0; i < c->nseries; i++)
        series(f, &fr, &c->series[i], i);
    line_legend(f, c);
    fputs("</svg>\n", f);
}

/* ---- stacked bars ---- */

static double bar_total(const svg_bar_chart *c, int b)
{
    double t = 0;
    for (int s = 0; s < c->nstacks; s++) {
        double v = c->values[b * c->nstacks + s];
        t += isfinite(v) && v > 0 ? v : 0;
    }
    return t;
}

static int bar_measured(const svg_bar_chart *c, int b)
{
    for (int s = 0; s < c->nstacks; s++)
        if (isfinite(c->values[b * c->nstacks + s]))
            return 1;
    return 0;
}

static int stack_used(const svg_bar_chart *c, int s)
{
    for (int b = 0; b < c->nbars; b++)
        if (c->values[b * c->nstacks + s] > 0)
            return 1;
    return 0;
}

/* Bar b, its segments bottom-up, its total on top with `dec` decimals. */
static void bar(FILE *f, const frame *fr, const svg_bar_chart *c, int b, int dec)
{
    double slot = (double)(RIGHT - LEFT) / c->nbars;
    double w = fmin(slot * 0.6, 90), x = LEFT + slot * b + (slot - w) / 2, base = 0;
    char buf[96];
    fputs("<g class=\"bar\">\n", f);
    for (int s = 0; s < c->nstacks; s++) {
        double v = c->values[b * c->nstacks + s];
        if (!(isfinite(v) && v > 0))
            continue;
        double ytop = py(fr, base + v);
        fputs("<g><title>", f);
        svg_escape(f, c->bar_names[b]);
        fputs(", ", f);
        svg_escape(f, c->stack_names[s]);
        fprintf(f, ": %.4g ", v);
        svg_escape(f, c->unit);
        fprintf(f, "</title><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                   "fill=\"%s\"/></g>\n",
                x, ytop, w, py(fr, base) - ytop, svg_colour(s));
        base += v;
    }
    if (bar_measured(c, b))
        snprintf(buf, sizeof buf, "%.*f %s", dec, base, c->unit);
    else
        snprintf(buf, sizeof buf, "no data");
    text(f, x + w / 2, py(fr, base) - 6, "middle", " font-size=\"12\"", buf);
    text(f, x + w / 2, BOTTOM + 19, "middle", "", c->bar_names[b]);
    fputs("</g>\n", f);
}

/* Legend top-down in the order the segments are stacked bottom-up, so
 * that it reads like the bars. */
static void bar_legend(FILE *f, const svg_bar_chart *c)
{
    int row = 0;
    for (int s = c->nstacks - 1; s >= 0; s--) {
        if (!stack_used(c, s))
            continue;
        double y = TOP + 10 + 24.0 * row++;
        fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"%s\"/>\n",
                RIGHT + 22, y - 7, svg_colour(s));
        text(f, RIGHT + 44, y + 4.5, "start", " font-size=\"12\"", c->stack_names[s]);
    }
}

void svg_write_bar_chart(FILE *f, const svg_bar_chart *c)
{
    double top = 0, ystep, last;
    frame fr = {0, 1, 0, 1};
    for (int b = 0; b < c->nbars; b++)
        top = fmax(top, bar_total(c, b));
    svg_nice_ticks(0, top > 0 ? top * 1.08 : 1, 6, &fr.y0, &last, &ystep); /* room for labels */
    fr.y0 = 0;
    fr.y1 = last;
    begin(f, c->title);
    axes(f, &fr, 1, ystep, 0, c->xlabel, c->ylabel);
    int dec = tick_decimals(ystep) + 1; /* one more than the axis: totals differ less */
    for (int b = 0; b < c->nbars; b++)
        bar(f, &fr, c, b, dec < 2 ? 2 : dec);
    bar_legend(f, c);
    fputs("</svg>\n", f);
}
