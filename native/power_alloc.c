/*
 * Per-GPU power limits by weighted water-filling with a load-shedding ladder and
 * hysteresis.
 *
 * Each active GPU i gets clamp(lambda * w_i, p_min_i, hi_i), hi_i = min(p_max_i, cap_i);
 * lambda is the water level that makes the rack's draw meet the budget. This is the KKT
 * solution of maximising sum_i w_i log(x_i) (weighted proportional fairness) over the box
 * p_min_i <= x_i <= hi_i with the sum fixed, derived as the water-filling problem of
 * S. Boyd and L. Vandenberghe, "Convex Optimization", CUP 2004, sec. 5.5.3. The level is
 * found by bisection: deterministic, no sort, trivially mirrored in Python, and monotone
 * in the budget (for a fixed active set the bisection midpoints do not depend on the
 * budget, so each decision can only move up when the budget grows).
 *
 * Reference implementation: flight/control/power_alloc.py (same operation order).
 */
#include <math.h>

#include "rackflight_native.h"

/* Rack draw at water level lambda: active GPUs at their water-filled limit, parked ones
 * at idle. Summed in index order so the Python reference matches bit for bit. At
 * lambda = 0 every active GPU sits at p_min (p_min > 0), which is the ladder's "need". */
static double rf_draw_at(int n, double lambda, const rf_power_config *cfg,
                         const rf_power_work *wk)
{
    double total = 0.0;
    for (int i = 0; i < n; ++i) {
        total += wk->active[i]
                     ? rf_clamp(lambda * wk->weight[i], cfg->p_min_w[i], wk->hi_w[i])
                     : cfg->p_idle_w[i];
    }
    return total;
}

/* Whether GPU i may keep its previous limit instead of the new one. */
static int rf_holds(double prev, double fresh, double p_min, double hi, double hysteresis_w)
{
    /* The previous value must still be a legal limit this tick (a dropped thermal cap
     * must take effect at once), and 0 = parked never counts as a limit to keep. */
    return prev >= p_min && prev <= hi && fabs(fresh - prev) < hysteresis_w;
}

static double rf_water_level(int n, double budget, const rf_power_config *cfg,
                             rf_power_work *wk)
{
    double w_max = 0.0;
    for (int i = 0; i < n; ++i) {
        if (wk->active[i] && wk->weight[i] > w_max) {
            w_max = wk->weight[i];
        }
    }
    if (!(w_max > 0.0)) {
        return 0.0;
    }
    /* Normalising to a largest weight of 1 keeps lambda ~ watts, so the bracket is finite
     * however large or small the caller's weights are. */
    double lam_lo = RF_SAT;
    double lam_hi = 0.0;
    for (int i = 0; i < n; ++i) {
        const double wn = wk->active[i] ? wk->weight[i] / w_max : 0.0;
        wk->weight[i] = wn;
        if (wn > 0.0) {
            const double a = cfg->p_min_w[i] / wn;
            const double b = wk->hi_w[i] / wn;
            lam_lo = a < lam_lo ? a : lam_lo;
            lam_hi = b > lam_hi ? b : lam_hi;
        }
    }
    /* Half the lowest breakpoint puts every GPU strictly below p_min despite rounding, so
     * the draw there is exactly the ladder's need, which fits the budget. */
    lam_lo = 0.5 * lam_lo;
    lam_hi = rf_sat(lam_hi);
    for (int k = 0; k < RF_POWER_BISECT_MAX_ITER; ++k) {
        /* Geometric steps while the bracket spans more than a factor 2 (weights spanning
         * many decades), arithmetic ones after: full precision in < 70 evaluations. */
        const double mid = lam_hi > 2.0 * lam_lo ? sqrt(lam_lo) * sqrt(lam_hi)
                                                 : lam_lo + 0.5 * (lam_hi - lam_lo);
        if (!(mid > lam_lo && mid < lam_hi)) {
            break;
        }
        if (rf_draw_at(n, mid, cfg, wk) <= budget) {
            lam_lo = mid;
        } else {
            lam_hi = mid;
        }
    }
    return lam_lo;
}

void rf_power_allocate(int n, double budget_w, const double *weight, const double *cap_w,
                       const rf_power_config *cfg, rf_power_work *wk, double *limits_w,
                       rf_power_result *result)
{
    /* An unknown (NaN) budget saturates to -RF_SAT: nothing fits, the safe answer. */
    const double budget = rf_sat(budget_w);
    for (int i = 0; i < n; ++i) {
        wk->weight[i] = rf_clamp(weight[i], 0.0, RF_SAT);
        /* An unknown (NaN) thermal cap becomes 0, which parks the GPU. */
        wk->hi_w[i] = rf_clamp(cap_w[i], 0.0, cfg->p_max_w[i]);
        wk->active[i] = wk->hi_w[i] >= cfg->p_min_w[i];
    }

    /* Load-shedding ladder: lowest weight first, ties from the highest index. */
    int n_shed = 0;
    double need = rf_draw_at(n, 0.0, cfg, wk);
    while (need > budget) {
        int victim = -1;
        for (int i = n - 1; i >= 0; --i) {
            if (wk->active[i] && (victim < 0 || wk->weight[i] < wk->weight[victim])) {
                victim = i;
            }
        }
        if (victim < 0) {
            break;
        }
        wk->active[victim] = 0;
        ++n_shed;
        need = rf_draw_at(n, 0.0, cfg, wk);
    }
    result->n_shed = n_shed;
    if (need > budget) {
        for (int i = 0; i < n; ++i) {
            limits_w[i] = 0.0;
        }
        result->n_parked = n;
        result->feasible = 0;
        return;
    }

    double draw_hi = 0.0;
    for (int i = 0; i < n; ++i) {
        draw_hi += wk->active[i] ? wk->hi_w[i] : cfg->p_idle_w[i];
    }
    if (draw_hi <= budget) {
        for (int i = 0; i < n; ++i) {
            wk->limit_w[i] = wk->active[i] ? wk->hi_w[i] : 0.0;
        }
    } else {
        const double lambda = rf_water_level(n, budget, cfg, wk);
        for (int i = 0; i < n; ++i) {
            wk->limit_w[i] = wk->active[i] ? rf_clamp(lambda * wk->weight[i], cfg->p_min_w[i],
                                                      wk->hi_w[i])
                                           : 0.0;
        }
    }

    /* Hysteresis is all or nothing: holding only some GPUs would need a second solve. */
    const double h = cfg->hysteresis_w;
    int n_hold = 0;
    double held_draw = 0.0;
    for (int i = 0; i < n; ++i) {
        if (wk->active[i]) {
            const double prev = limits_w[i];
            const int hold = rf_holds(prev, wk->limit_w[i], cfg->p_min_w[i], wk->hi_w[i], h);
            n_hold += hold;
            held_draw += hold ? prev : wk->limit_w[i];
        } else {
            held_draw += cfg->p_idle_w[i];
        }
    }
    const int keep = n_hold > 0 && held_draw <= budget;

    int n_parked = 0;
    for (int i = 0; i < n; ++i) {
        const double prev = limits_w[i];
        if (!wk->active[i]) {
            limits_w[i] = 0.0;
            ++n_parked;
        } else if (keep && rf_holds(prev, wk->limit_w[i], cfg->p_min_w[i], wk->hi_w[i], h)) {
            limits_w[i] = prev;
        } else {
            limits_w[i] = wk->limit_w[i];
        }
    }
    result->n_parked = n_parked;
    result->feasible = 1;
}
