/*
 * Batched PID for the thermal loops and per-GPU thermal headroom.
 *
 * PID form after K. J. Astrom and T. Hagglund, "Advanced PID Control", ISA 2006, ch. 3
 * (filtering and set-point weighting, windup) and the chapter on implementation:
 * - derivative acts on the measurement, not the error (set-point weight c = 0), so
 *   setpoint steps do not kick the actuator;
 * - the derivative is low-pass filtered with time constant Tf and discretised with the
 *   backward difference, which is stable for every Tf >= 0 and dt > 0;
 * - windup is prevented by conditional integration: the integrator does not move further
 *   in a direction the output is already saturated in (amplitude clamp or slew limit),
 *   and is itself kept inside the output range.
 *
 * Reference implementation: flight/control/thermal_pid.py (same operation order).
 */
#include <math.h>

#include "rackflight_native.h"

void rf_pid_reset(int n, const double *output0, const rf_pid_params *p, rf_pid_state *s)
{
    for (int i = 0; i < n; ++i) {
        const double u = rf_sat(rf_clamp(output0[i], p->out_min[i], p->out_max[i]));
        /* Integrator = output makes the first step bumpless apart from the P term. */
        s->integrator[i] = u;
        s->derivative[i] = 0.0;
        s->prev_measurement[i] = NAN;
        s->output[i] = u;
    }
}

void rf_pid_step(int n, double dt_s, const double *setpoint, const double *measurement,
                 const rf_pid_params *p, rf_pid_state *s)
{
    /* A stalled or backwards clock must not integrate or differentiate anything. */
    if (!(dt_s > 0.0 && dt_s <= RF_SAT)) {
        return;
    }
    for (int i = 0; i < n; ++i) {
        const double y = measurement[i];
        const double r = setpoint[i];
        /* A failed sensor must not poison the integrator or derivative: hold the loop. */
        if (!(isfinite(y) && isfinite(r))) {
            continue;
        }
        const double dir = p->direction[i] < 0.0 ? -1.0 : 1.0;
        const double lo = p->out_min[i];
        const double hi = p->out_max[i];
        const double u_prev = s->output[i];

        const double e = dir * rf_sat(r - y);
        const double prop = rf_sat(p->kp[i] * e);

        /* After reset prev_measurement is NaN: treat this sample as the previous one so the
         * first step has no derivative kick. */
        const double y_prev = isnan(s->prev_measurement[i]) ? y : s->prev_measurement[i];
        const double tau = rf_clamp(p->derivative_tau_s[i], 0.0, RF_SAT);
        const double a = tau / (tau + dt_s);
        const double g = rf_sat(p->kd[i] / (tau + dt_s));
        const double deriv = rf_sat(a * s->derivative[i] - dir * rf_sat(g * rf_sat(y - y_prev)));

        /* Effective limits this step: the amplitude clamp and the slew window. */
        const double slew = p->slew_per_s[i] > 0.0 ? p->slew_per_s[i] : 0.0;
        const double du = slew * dt_s;
        const double lo_eff = lo > u_prev - du ? lo : u_prev - du;
        const double hi_eff = hi < u_prev + du ? hi : u_prev + du;

        const double di = rf_sat(rf_sat(p->ki[i] * e) * dt_s);
        const double v0 = prop + s->integrator[i] + deriv;
        double integ = s->integrator[i];
        if (!((di > 0.0 && v0 >= hi_eff) || (di < 0.0 && v0 <= lo_eff))) {
            integ += di;
        }
        integ = rf_sat(rf_clamp(integ, lo, hi));

        const double u = rf_sat(rf_clamp(prop + integ + deriv, lo_eff, hi_eff));

        s->integrator[i] = integ;
        s->derivative[i] = deriv;
        s->prev_measurement[i] = y;
        s->output[i] = u;
    }
}

void rf_thermal_headroom(int n, double target_c, const double *gpu_temp_c,
                         const double *gpu_power_w, const double *r_th_c_per_w,
                         double *headroom_w)
{
    for (int i = 0; i < n; ++i) {
        const double t = gpu_temp_c[i];
        const double pw = gpu_power_w[i];
        const double r = r_th_c_per_w[i];
        double h = 0.0;
        /* Without a trustworthy reading the GPU gets no headroom: the safe side. */
        if (isfinite(target_c) && isfinite(t) && isfinite(pw) && r > 0.0 && isfinite(r)) {
            h = pw + (target_c - t) / r;
        }
        headroom_w[i] = rf_clamp(h, 0.0, RF_SAT);
    }
}
