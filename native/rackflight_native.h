/*
 * rackflight native control loops: batched thermal PID, per-GPU thermal headroom and the
 * per-GPU power allocator. One call steps every loop / every GPU of the rack; no call
 * allocates. All arrays are caller-owned, contiguous, length n, float64 unless noted.
 *
 * Every loop has a pure-Python reference with the same operation order
 * (flight/control/thermal_pid.py, flight/control/power_alloc.py); the tests require the two
 * to agree, so a change here needs the same change there.
 *
 * The text between the CFFI-CDEF markers is also the cffi cdef (native/build_native.py
 * reads it), so it must stay plain declarations: no preprocessor lines, no initialisers.
 */
#ifndef RACKFLIGHT_NATIVE_H
#define RACKFLIGHT_NATIVE_H

/*
 * Magnitude every intermediate and every state value is saturated to. Keeping all terms
 * finite means sums of terms can overflow to +-inf but never become NaN (inf - inf), so any
 * finite input yields finite outputs. Mirrored as RF_SAT in the Python references.
 */
#define RF_SAT 1e300

/* Upper bound on bisection steps for the water-filling level. The search ends long before
 * (at most ~12 geometric steps to bring the bracket within a factor 2, then ~53 halvings
 * to two adjacent doubles); the bound only makes termination evident. */
#define RF_POWER_BISECT_MAX_ITER 128

/*
 * Clamp that never returns NaN for a NaN x (it becomes lo) and lets hi win when
 * lo > hi, so a misconfigured limit pair still yields a value inside the upper limit.
 */
static inline double rf_clamp(double x, double lo, double hi)
{
    if (!(x >= lo)) {
        x = lo;
    }
    if (x > hi) {
        x = hi;
    }
    return x;
}

static inline double rf_sat(double x)
{
    return rf_clamp(x, -RF_SAT, RF_SAT);
}

/* CFFI-CDEF-BEGIN */

/* Per-loop PID parameters (struct of arrays, length n each). */
typedef struct {
    const double *kp;               /* proportional gain, output units per error unit */
    const double *ki;               /* integral gain, output units per (error unit * s) */
    const double *kd;               /* derivative gain, output units per (error unit / s) */
    const double *derivative_tau_s; /* derivative low-pass time constant, s (<= 0: none) */
    const double *out_min;          /* output lower clamp (may be -inf) */
    const double *out_max;          /* output upper clamp (may be +inf; wins if < out_min) */
    const double *slew_per_s;       /* max |d output / dt|, output units per s (+inf: none) */
    const double *direction;        /* +1 direct acting, < 0 reverse acting */
} rf_pid_params;

/* Per-loop PID state (struct of arrays, length n each), written by reset and step. */
typedef struct {
    double *integrator;       /* integral term, output units, kept in [out_min, out_max] */
    double *derivative;       /* filtered derivative term, output units */
    double *prev_measurement; /* NaN after reset: the next step primes it (no kick) */
    double *output;           /* last output, output units */
} rf_pid_state;

/* Bumpless start at output0 (clamped): integrator = output, derivative = 0. */
void rf_pid_reset(int n, const double *output0, const rf_pid_params *p, rf_pid_state *s);

/* One step of all n loops; dt_s <= 0 or non-finite leaves every loop unchanged, a
 * non-finite setpoint or measurement leaves that loop unchanged. */
void rf_pid_step(int n, double dt_s, const double *setpoint, const double *measurement,
                 const rf_pid_params *p, rf_pid_state *s);

/* headroom_w[i] = max(0, gpu_power_w[i] + (target_c - gpu_temp_c[i]) / r_th_c_per_w[i]);
 * 0 where any input is non-finite or r_th <= 0. */
void rf_thermal_headroom(int n, double target_c, const double *gpu_temp_c,
                         const double *gpu_power_w, const double *r_th_c_per_w,
                         double *headroom_w);

/* Fixed per-GPU configuration of the allocator (length n each, except hysteresis_w).
 * Preconditions (checked by the Python wrapper): 0 <= p_idle <= p_min, 0 < p_min <= p_max,
 * all finite, hysteresis_w >= 0. */
typedef struct {
    const double *p_min_w;
    const double *p_max_w;
    const double *p_idle_w;
    double hysteresis_w;
} rf_power_config;

/* Scratch space owned by the caller so the step never allocates (length n each). */
typedef struct {
    double *hi_w;           /* min(p_max, cap) this tick */
    double *weight;         /* sanitised, then normalised to max 1 */
    double *limit_w;        /* limits before hysteresis */
    unsigned char *active;  /* 1 = gets a limit, 0 = parked at idle */
} rf_power_work;

typedef struct {
    int n_parked;   /* GPUs with limit 0 (thermal parks + shed) */
    int n_shed;     /* GPUs parked by the load-shedding ladder */
    int feasible;   /* 1 if the result fits budget_w */
} rf_power_result;

/* Water-filling power limits for n GPUs. limits_w holds the previous limits on entry
 * (hysteresis) and the new ones on return; 0 means parked at p_idle_w. */
void rf_power_allocate(int n, double budget_w, const double *weight, const double *cap_w,
                       const rf_power_config *cfg, rf_power_work *work, double *limits_w,
                       rf_power_result *result);

/* CFFI-CDEF-END */

#endif /* RACKFLIGHT_NATIVE_H */
