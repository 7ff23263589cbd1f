use charmrs::prelude::*;
use std::rc::Rc;

pub struct W;

#[chare]
impl W {
    fn new() -> Self {
        W
    }
    fn take(&mut self, _x: Rc<u32>) {}
}

fn main() {}
