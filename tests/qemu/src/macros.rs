//! Assertions that return a [`Failure`](crate::Failure) instead of panicking: a panic on the
//! target would end the run at the first failed check.

/// A [`Failure`](crate::Failure) of `$what` at the caller's file and line.
macro_rules! fail {
    ($what:expr) => {
        $crate::Failure::new($what, file!(), line!())
    };
}

/// Fails the check unless `$cond` holds.
macro_rules! ensure {
    ($cond:expr $(,)?) => {
        if !$cond {
            return Err(fail!(stringify!($cond)));
        }
    };
    ($cond:expr, $($detail:tt)+) => {
        if !$cond {
            return Err(fail!(stringify!($cond)).with_detail(format_args!($($detail)+)));
        }
    };
}

/// Fails the check unless `$left == $right`, showing both values.
macro_rules! ensure_eq {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    return Err(fail!(concat!(stringify!($left), " == ", stringify!($right)))
                        .with_detail(format_args!("left {:?}, right {:?}", left, right)));
                }
            }
        }
    };
}

/// Fails the check unless `$value` matches `$pattern` (matched by reference).
macro_rules! ensure_matches {
    ($value:expr, $pattern:pat $(if $guard:expr)? $(,)?) => {
        match &$value {
            value => {
                if !matches!(value, $pattern $(if $guard)?) {
                    return Err(fail!(concat!(stringify!($value), " matches ", stringify!($pattern)))
                        .with_detail(format_args!("got {:?}", value)));
                }
            }
        }
    };
}

/// The value inside `Some`, or the check fails.
macro_rules! some {
    ($option:expr) => {
        match $option {
            Some(value) => value,
            None => return Err(fail!(concat!(stringify!($option), " is Some"))),
        }
    };
}

/// The value inside `Ok`, or the check fails showing the error.
macro_rules! ok {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(error) => {
                return Err(fail!(concat!(stringify!($result), " is Ok"))
                    .with_detail(format_args!("{:?}", error)));
            }
        }
    };
}
