/* svg.h - two small SVG charts drawn without a plotting library: a line
 * chart with markers and a stacked bar chart, each with a title, axes,
 * ticks, axis labels and a legend.  Private to examples/.
 *
 * The writers print to a stdio stream; the caller checks ferror().  Text
 * is XML-escaped.  Non-finite values are not drawn: a point is skipped (a
 * series without any point gets no line, only its legend entry), a bar
 * segment counts as 0 and a bar without any finite value is labelled
 * "no data". */
#ifndef PLAST_SVG_H
#define PLAST_SVG_H

#include <stdio.h>

typedef struct svg_series {
    const char *name;       /* legend text */
    int n;                  /* number of points */
    const double *x, *y;    /* n values each */
} svg_series;

typedef struct svg_line_chart {
    const char *title, *xlabel, *ylabel;
    const svg_series *series;
    int nseries;
    double ymin, ymax;      /* the y range is kept inside [ymin, ymax] */
    int integer_x;          /* x ticks on whole numbers only (epochs) */
} svg_line_chart;

typedef struct svg_bar_chart {
    const char *title, *xlabel, *ylabel;
    const char *unit;               /* printed after the total atop each bar */
    int nbars, nstacks;
    const char *const *bar_names;   /* nbars labels under the bars */
    const char *const *stack_names; /* nstacks legend entries, bottom first */
    const double *values;           /* nbars x nstacks, row-major, >= 0 or NaN */
} svg_bar_chart;

void svg_write_line_chart(FILE *f, const svg_line_chart *c);
void svg_write_bar_chart(FILE *f, const svg_bar_chart *c);

/* Write `s` with &, <, >, " and ' escaped; control bytes become '?'. */
void svg_escape(FILE *f, const char *s);

/* Round ticks covering [lo, hi]: about `target` of them, each a multiple
 * of `*step` (1, 2 or 5 times a power of ten), from `*first` to `*last`
 * (which enclose lo and hi).  Returns how many there are. */
int svg_nice_ticks(double lo, double hi, int target, double *first, double *last,
                   double *step);

/* The i-th colour of the palette (cycles). */
const char *svg_colour(int i);

#endif
