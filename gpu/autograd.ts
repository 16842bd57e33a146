/**
 * Reverse-mode autograd. Each op that sees an input requiring grad attaches a `Node` to its output:
 * the inputs, the tensors it saved (retained handles) and a backward function. `backward()` walks
 * the graph from the loss in reverse topological order, frees each node's saved tensors right after
 * use, and accumulates leaf gradients into `.grad`.
 *
 * @module
 */
import { type BackwardFn, type GradAccumulator, Node, scope, type Tensor } from "./tensor.ts";

export type { BackwardFn, GradAccumulator };
export { Node };

let gradEnabled = true;

/** Whether ops currently record for autograd. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Run `fn` without recording ops. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Run `fn` with recording on (inside a `noGrad`, e.g. for checkpoint recomputation). */
export function withGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = true;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** True when an op on these inputs must record a node. */
export function needsGrad(inputs: (Tensor | null | undefined)[]): boolean {
  if (!gradEnabled) return false;
  for (const t of inputs) if (t && t.requiresGrad) return true;
  return false;
}

/**
 * Attach a node to `output` when any input requires grad. `save` tensors are retained (their
 * buffers stay alive even if the caller disposes its handles) and passed to `backward`.
 */
export function record(
  name: string,
  inputs: Tensor[],
  output: Tensor,
  save: Tensor[],
  backward: BackwardFn,
): Tensor {
  if (!needsGrad(inputs)) return output;
  output.requiresGrad = true;
  const saved = save.map((t) => t.retain().keep());
  output.node = new Node(name, inputs, saved, backward);
  return output;
}

/** Reverse topological order of the nodes reachable from `root`. */
function topo(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    if (i === 0) {
      if (seen.has(t)) {
        stack.pop();
        continue;
      }
      seen.add(t);
    }
    const inputs = t.node ? t.node.inputs : [];
    if (i < inputs.length) {
      top[1]++;
      const child = inputs[i];
      if (child.requiresGrad && !seen.has(child)) stack.push([child, 0]);
    } else {
      stack.pop();
      order.push(t);
    }
  }
  return order.reverse();
}

type AddFn = (a: Tensor, b: Tensor) => Tensor;
let addImpl: AddFn | null = null;
let onesLikeImpl: ((t: Tensor) => Tensor) | null = null;

/** The ops module registers how gradients are summed and seeded (avoids an import cycle). */
export function registerGradHelpers(add: AddFn, onesLike: (t: Tensor) => Tensor): void {
  addImpl = add;
  onesLikeImpl = onesLike;
}

/**
 * Back-propagate from `root` (a scalar loss unless `gradOut` is given). Leaf tensors with
 * `requiresGrad` receive (accumulate into) `.grad`; the graph's saved tensors are released.
 */
export function backward(root: Tensor, gradOut?: Tensor): void {
  if (!root.requiresGrad) throw new Error("backward(): the tensor does not require grad");
  const add = addImpl!;
  noGrad(() => {
    const grads = new Map<Tensor, Tensor>();
    grads.set(root, gradOut ? gradOut.retain().keep() : onesLikeImpl!(root).keep());
    for (const t of topo(root)) {
      const g = grads.get(t);
      grads.delete(t);
      if (!g) continue;
      if (!t.node) {
        // A leaf: accumulate.
        if (t.grad) {
          const sum = add(t.grad, g).keep();
          t.grad.dispose();
          g.dispose();
          t.grad = sum;
        } else {
          t.grad = g;
        }
        continue;
      }
      const node = t.node;
      const taken = new Map<number, Tensor>();
      const acc: GradAccumulator = {
        take: (k) => {
          const inp = node.inputs[k];
          const prev = inp.requiresGrad ? grads.get(inp) : undefined;
          if (!prev || taken.has(k)) return null;
          grads.delete(inp);
          taken.set(k, prev);
          return prev;
        },
      };
      const gins = scope(() => node.backward(g, node.saved, acc));
      g.dispose();
      node.release();
      t.node = null;
      for (const [k, prev] of taken) {
        prev.dispose();
        if (!gins[k]) {
          throw new Error(`autograd: ${node.name} took input ${k}'s gradient and lost it`);
        }
      }
      node.inputs.forEach((inp, k) => {
        const gi = gins[k];
        if (!gi) return;
        gi.keep();
        if (!inp.requiresGrad) {
          gi.dispose();
          return;
        }
        if (gi.shape.join() !== inp.shape.join()) {
          throw new Error(
            `autograd: ${node.name} returned a gradient of shape [${gi.shape}] for input [${inp.shape}]`,
          );
        }
        const prev = grads.get(inp);
        if (prev) {
          grads.set(inp, add(prev, gi).keep());
          prev.dispose();
          gi.dispose();
        } else {
          grads.set(inp, gi);
        }
      });
    }
    for (const g of grads.values()) g.dispose();
  });
}

/** Drop the graph below `t` without back-propagating (frees saved tensors). */
export function releaseGraph(t: Tensor): void {
  for (const x of topo(t)) {
    if (x.node) {
      x.node.release();
      x.node = null;
    }
  }
}

/**
 * Gradient checkpointing: run `fn` without recording, keep only its inputs, and recompute its
 * forward during backward. Parameters captured by `fn` receive their gradients as usual.
 */
export function checkpoint(fn: (...xs: Tensor[]) => Tensor, ...xs: Tensor[]): Tensor {
  if (!gradEnabled) return fn(...xs);
  // Intermediates of the un-recorded forward are freed at once: only the output survives.
  const out = noGrad(() => scope(() => fn(...xs)));
  out.requiresGrad = true;
  const saved = xs.map((x) => x.retain().keep());
  out.node = new Node("checkpoint", xs, saved, (g, s) => {
    const detached = s.map((x, k) => {
      const d = x.retain().keep();
      d.requiresGrad = xs[k].requiresGrad;
      return d;
    });
    const y = withGrad(() => scope(() => fn(...detached))).keep();
    if (y.requiresGrad) backward(y, g);
    y.dispose();
    return detached.map((d) => {
      const gr = d.grad;
      d.grad = null;
      d.dispose();
      return gr;
    });
  });
  return out;
}
