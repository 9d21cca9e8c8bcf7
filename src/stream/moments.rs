//! Running moments that take values back, for variance, covariance and correlation over rows
//! that change: Welford's updates, and for a delete the same steps run backwards (the last
//! value taken back empties them). Kept in f64, as DataFusion and Postgres' float8 compute
//! these aggregates.

/// Count, mean and sum of squared deviations of one variable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: i64,
    pub mean: f64,
    pub m2: f64,
}

impl Moments {
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    pub fn remove(&mut self, x: f64) {
        if self.n <= 1 {
            *self = Moments::default();
            return;
        }
        let before = (self.mean * self.n as f64 - x) / (self.n - 1) as f64;
        self.m2 = (self.m2 - (x - before) * (x - self.mean)).max(0.0);
        self.mean = before;
        self.n -= 1;
    }

    /// The sample (`n − 1`) or population variance; `None` without enough values.
    pub fn variance(&self, sample: bool) -> Option<f64> {
        let divisor = if sample { self.n - 1 } else { self.n };
        (divisor > 0).then(|| (self.m2 / divisor as f64).max(0.0))
    }

    /// Whether the values are all equal, give or take what adding and taking back rounds
    /// off (about 1e-16 of mean² per value each time): a spread that is pure rounding must
    /// not make a correlation of noise.
    fn flat(&self) -> bool {
        self.m2 <= 1e-12 * (self.mean * self.mean + 1.0) * self.n as f64
    }
}

/// Two variables' moments and their co-moment, Σ (x − x̄)(y − ȳ).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CoMoments {
    pub x: Moments,
    pub y: Moments,
    pub c: f64,
}

impl CoMoments {
    pub fn add(&mut self, x: f64, y: f64) {
        let dx = x - self.x.mean;
        self.x.add(x);
        self.y.add(y);
        self.c += dx * (y - self.y.mean);
    }

    pub fn remove(&mut self, x: f64, y: f64) {
        if self.x.n <= 1 {
            *self = CoMoments::default();
            return;
        }
        let y_mean = self.y.mean;
        self.x.remove(x);
        self.c -= (x - self.x.mean) * (y - y_mean);
        self.y.remove(y);
    }

    /// `covar_samp` or `covar_pop`.
    pub fn covariance(&self, sample: bool) -> Option<f64> {
        let divisor = if sample { self.x.n - 1 } else { self.x.n };
        (divisor > 0).then(|| self.c / divisor as f64)
    }

    /// `corr`: NULL for fewer than two pairs or a variable that does not vary (DataFusion's
    /// rule).
    pub fn correlation(&self) -> Option<f64> {
        if self.x.n < 2 || self.x.flat() || self.y.flat() {
            return None;
        }
        Some((self.c / (self.x.m2 * self.y.m2).sqrt()).clamp(-1.0, 1.0))
    }

    /// `regr_*(y, x)`, the pairs added as `(y, x)` (the dependent variable first, as the
    /// functions take them), with DataFusion's rules: NULL without pairs; the slope, the
    /// intercept and r² also NULL for one pair or an `x` that does not vary, r² for a `y`
    /// that does not vary.
    pub fn regression(&self, what: Regression) -> Option<f64> {
        let (y, x, n) = (&self.x, &self.y, self.x.n);
        let line = n >= 2 && !x.flat();
        let slope = || self.c / x.m2;
        match what {
            Regression::Count => Some(n as f64),
            _ if n < 1 => None,
            Regression::AvgX => Some(x.mean),
            Regression::AvgY => Some(y.mean),
            Regression::Sxx => Some(x.m2),
            Regression::Syy => Some(y.m2),
            Regression::Sxy => Some(self.c),
            Regression::Slope => line.then(slope),
            Regression::Intercept => line.then(|| y.mean - slope() * x.mean),
            Regression::R2 => (line && !y.flat()).then(|| self.c * self.c / (x.m2 * y.m2)),
        }
    }
}

/// The `regr_*` aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regression {
    Count,
    AvgX,
    AvgY,
    Sxx,
    Syy,
    Sxy,
    Slope,
    Intercept,
    R2,
}

impl Regression {
    /// The aggregate named `name` (lowercase), if it is one.
    pub fn named(name: &str) -> Option<Self> {
        Some(match name {
            "regr_count" => Regression::Count,
            "regr_avgx" => Regression::AvgX,
            "regr_avgy" => Regression::AvgY,
            "regr_sxx" => Regression::Sxx,
            "regr_syy" => Regression::Syy,
            "regr_sxy" => Regression::Sxy,
            "regr_slope" => Regression::Slope,
            "regr_intercept" => Regression::Intercept,
            "regr_r2" => Regression::R2,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * (1.0 + b.abs())
    }

    /// Moments after inserts and deletes equal those of the values that remain.
    #[test]
    fn moments_taken_back_equal_moments_of_what_remains() {
        let mut m = Moments::default();
        for x in [3.0, -1.5, 10.0, 7.25, 0.0, 2.0, 2.0, 100.0] {
            m.add(x);
        }
        for x in [10.0, 2.0, 100.0] {
            m.remove(x);
        }
        let left = [3.0, -1.5, 7.25, 0.0, 2.0];
        let mean = left.iter().sum::<f64>() / left.len() as f64;
        let m2: f64 = left.iter().map(|x| (x - mean).powi(2)).sum();
        assert_eq!(m.n, 5);
        assert!(close(m.mean, mean) && close(m.m2, m2), "{m:?}");
        for x in left {
            m.remove(x);
        }
        assert_eq!(m, Moments::default());
    }

    /// Co-moments after inserts and deletes equal those of the pairs that remain.
    #[test]
    fn co_moments_taken_back_equal_co_moments_of_what_remains() {
        let pairs = [
            (1.0, 2.0),
            (2.0, 4.5),
            (3.0, 5.0),
            (-4.0, 1.0),
            (10.0, -3.0),
        ];
        let mut c = CoMoments::default();
        for (x, y) in pairs {
            c.add(x, y);
        }
        c.remove(2.0, 4.5);
        c.remove(10.0, -3.0);
        let left = [(1.0, 2.0), (3.0, 5.0), (-4.0, 1.0)];
        let mx = left.iter().map(|p| p.0).sum::<f64>() / 3.0;
        let my = left.iter().map(|p| p.1).sum::<f64>() / 3.0;
        let cxy: f64 = left.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = left.iter().map(|(x, _)| (x - mx).powi(2)).sum();
        let syy: f64 = left.iter().map(|(_, y)| (y - my).powi(2)).sum();
        assert!(close(c.c, cxy), "{c:?}");
        assert!(close(c.covariance(true).unwrap(), cxy / 2.0));
        assert!(close(c.correlation().unwrap(), cxy / (sxx * syy).sqrt()));
        // A variable that stops varying has no correlation.
        c.remove(-4.0, 1.0);
        c.add(1.0, 7.0);
        c.remove(3.0, 5.0);
        c.add(1.0, 0.0);
        assert_eq!(c.x.n, 3);
        assert_eq!(c.correlation(), None);
        assert!(close(c.covariance(false).unwrap(), 0.0));
    }

    /// The regression line of what remains after deletes, against its textbook formulas.
    #[test]
    fn regression_after_deletes_is_the_line_of_what_remains() {
        let mut c = CoMoments::default();
        // (y, x) pairs.
        for (y, x) in [
            (3.0, 1.0),
            (5.0, 2.0),
            (6.5, 3.0),
            (100.0, 50.0),
            (9.0, 4.0),
        ] {
            c.add(y, x);
        }
        c.remove(100.0, 50.0);
        let (ys, xs) = ([3.0, 5.0, 6.5, 9.0], [1.0, 2.0, 3.0, 4.0]);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (my, mx) = (mean(&ys), mean(&xs));
        let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        let syy: f64 = ys.iter().map(|y| (y - my).powi(2)).sum();
        let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let at = |what| c.regression(what).unwrap();
        assert_eq!(at(Regression::Count), 4.0);
        assert!(close(at(Regression::AvgX), mx) && close(at(Regression::AvgY), my));
        assert!(close(at(Regression::Sxx), sxx) && close(at(Regression::Syy), syy));
        assert!(close(at(Regression::Sxy), sxy));
        assert!(close(at(Regression::Slope), sxy / sxx));
        assert!(close(at(Regression::Intercept), my - sxy / sxx * mx));
        assert!(close(at(Regression::R2), sxy * sxy / (sxx * syy)));
        // One pair left: no line, but its averages; none: only the count.
        for (y, x) in [(5.0, 2.0), (6.5, 3.0), (9.0, 4.0)] {
            c.remove(y, x);
        }
        assert_eq!(c.regression(Regression::Slope), None);
        assert_eq!(c.regression(Regression::AvgX), Some(1.0));
        c.remove(3.0, 1.0);
        assert_eq!(c.regression(Regression::AvgY), None);
        assert_eq!(c.regression(Regression::Count), Some(0.0));
    }
}
