use charmrs::prelude::*;

pub struct W;

#[chare]
impl W {
    fn new() -> Self {
        W
    }
    fn add(&mut self, _x: f64) {}
}

fn use_proxy(p: WProxy) {
    p.add("one");
}

fn main() {}
