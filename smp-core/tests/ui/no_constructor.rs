use charmrs::prelude::*;

pub struct W;

#[chare]
impl W {
    fn add(&mut self, _x: f64) {}
}

fn main() {}
