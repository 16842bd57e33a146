/**
 * Optimizer state export/import (--save_state / --resume) for every optimizer, and kohya's
 * `--optimizer_type` / `--optimizer_args` resolved into typed optimizer specs.
 */
import assert from "node:assert/strict";
import {
  createOptimizer,
  initGpu,
  type Optimizer,
  type ParamGroup,
  rt,
  Tensor,
} from "../gpu/mod.ts";
import {
  chooseOptimizer,
  type OptimizerArg,
  parseOptimizerArgs,
} from "../core/kohya/optimizer_choice.ts";
import { randn } from "./op_check.ts";

/** kohya's choice for a type and args, built over `groups`, with its notes for them. */
function make(type: string, groups: ParamGroup[], args: Record<string, OptimizerArg> = {}) {
  const choice = chooseOptimizer(type, args);
  return {
    ...choice,
    optimizer: createOptimizer(choice.spec, groups),
    notes: choice.notes(groups.map((g) => g.lr)),
  };
}

const SHAPES = [[64, 80], [33], [4, 3, 1, 1]];

function makeParams(): Tensor[] {
  return SHAPES.map((s, k) =>
    Tensor.fromArray(randn(s.reduce((a, b) => a * b, 1), k + 1), s).param()
  );
}

function step(opt: Optimizer, ps: Tensor[], seed: number): void {
  ps.forEach((p, k) => (p.grad = Tensor.fromArray(randn(p.size, seed + k, 0.1), p.shape)));
  opt.update();
  opt.zeroGrad();
}

const CASES: [string, Record<string, number | boolean | null | number[]>][] = [
  ["AdamW", {}],
  ["AdamW8bit", { min_8bit_size: 1024 }],
  ["Lion", { weight_decay: 0.1 }],
  ["SGDNesterov", {}],
  ["Adafactor", { beta1: 0.9 }],
];

for (const [type, args] of CASES) {
  Deno.test(`${type}: exported state resumes to the same next step`, async () => {
    await initGpu();
    const before = rt().storage.stats().liveBytes;
    const groups = (ps: Tensor[]) => [{ params: ps.slice(0, 2), lr: 1e-2 }, {
      params: ps.slice(2),
      lr: 5e-3,
    }];
    const a = makeParams();
    const optA = make(type, groups(a), args).optimizer;
    step(optA, a, 10);
    step(optA, a, 20);
    const saved = await optA.exportState();
    assert.equal(saved.step, 2);
    assert.equal(saved.params.length, 3);
    // A fresh run: same parameter values, a new optimizer, the saved state.
    const b = await Promise.all(
      a.map(async (p) => Tensor.fromArray(await p.toArray(), p.shape).param()),
    );
    const optB = make(type, groups(b), args).optimizer;
    optB.importState(structuredClone(saved));
    step(optA, a, 30);
    step(optB, b, 30);
    for (let k = 0; k < a.length; k++) {
      assert.deepEqual(await b[k].toArray(), await a[k].toArray(), `param ${k}`);
    }
    const again = await optB.exportState();
    assert.equal(again.step, 3);
    optA.dispose();
    optB.dispose();
    for (const p of [...a, ...b]) p.dispose();
    rt().flush();
    assert.equal(rt().storage.stats().liveBytes, before, "pool back to baseline");
  });
}

Deno.test("importState rejects another optimizer's or mismatched state", async () => {
  await initGpu();
  const ps = makeParams();
  const lion = createOptimizer({ type: "Lion", options: {} }, ps);
  step(lion, ps, 1);
  const st = await lion.exportState();
  const adamw = createOptimizer({ type: "AdamW", options: {} }, ps);
  assert.throws(() => adamw.importState(st), /state is for Lion/);
  const other = createOptimizer({ type: "Lion", options: {} }, ps.slice(1));
  assert.throws(() => other.importState(st), /has 3 parameters, the optimizer has 2/);
  st.params[1]!.exp_avg.shape = [34];
  assert.throws(() => lion.importState(st), /parameter 1 \[33\]: 'exp_avg' is \[34\]/);
  for (const o of [lion, adamw, other]) o.dispose();
  for (const p of ps) p.dispose();
});

Deno.test("chooseOptimizer: kohya's names, defaults and errors", () => {
  const groups = [{ params: [] as Tensor[], lr: 1e-4 }, { params: [] as Tensor[], lr: 5e-5 }];
  assert.equal(make("ADAMW8BIT", groups).optimizer.type, "AdamW8bit");
  assert.equal(make("", groups).optimizer.type, "AdamW");
  const sgd = make("sgdnesterov", groups, { weight_decay: 0.01 });
  assert.equal(sgd.name, "torch.optim.sgd.SGD");
  assert.equal(sgd.argsText, "weight_decay=0.01,momentum=0.9");
  assert.match(sgd.notes[0], /momentum to 0\.9/);
  const af = make("Adafactor", groups, { scale_parameter: false });
  assert.equal(af.ownLr, true);
  assert.equal(af.argsText, "scale_parameter=False,relative_step=True");
  assert.ok(af.notes.some((n) => /text_encoder_lr are ignored/.test(n)));
  const af2 = make("adafactor", groups, { relative_step: false, warmup_init: true });
  assert.equal(af2.ownLr, true, "warmup_init forces relative_step");
  const af3 = make("adafactor", groups, { relative_step: false });
  assert.equal(af3.ownLr, false);
  assert.throws(
    () => make("Prodigy", groups),
    /kohya's Prodigy is not supported by lorakit; supported types are AdamW, AdamW8bit, Lion, SGDNesterov, Adafactor/,
  );
  assert.throws(() => make("torch.optim.RMSprop", groups), /unknown optimizer/);
  assert.throws(() => make("AdamW", groups, { momentum: 0.9 }), /does not take/);
  assert.throws(() => make("AdamW", groups, { amsgrad: true }), /not supported/);
  assert.throws(() => make("AdamW8bit", groups, { is_paged: true }), /paged/);
  assert.throws(() => make("SGDNesterov", groups, { nesterov: true }), /nesterov/);
  assert.throws(() => make("Lion", groups, { betas: 0.9 }), /pair/);
});

Deno.test("parseOptimizerArgs reads Python literals as kohya's ast.literal_eval", () => {
  assert.deepEqual(
    parseOptimizerArgs([
      "weight_decay=0.01",
      "betas=(0.9,0.99)",
      "relative_step=False",
      "beta1=None",
      "eps=[1e-30, 1e-3]",
      "name='x'",
    ]),
    {
      weight_decay: 0.01,
      betas: [0.9, 0.99],
      relative_step: false,
      beta1: null,
      eps: [1e-30, 1e-3],
      name: "x",
    },
  );
  assert.throws(() => parseOptimizerArgs(["weight_decay"]), /key=value/);
  assert.throws(() => parseOptimizerArgs(["x=true"]), /Python literal/);
});
