// Numerical Recipes' Chebyshev fit of erfc (relative error under 1.2e-7 for all arguments): for
// a >= 0 and t = 1 / (1 + 0.5 * a), erfc(a) = t * erfcFit(a, t).
fn erfcFit(a: f32, t: f32) -> f32 {
  return exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
}
