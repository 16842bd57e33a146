/**
 * Prompt files: gen_img's `--from_file` (kohya's line rule, then `planGeneration`: per-prompt
 * options, seeds, sizes, file names, batches) and train_network's `--sample_prompts`
 * (`parseSamplePrompts`).
 *
 * @module
 */
import { promptFileLines } from "../../../cli/gen_img_inputs.ts";
import { planGeneration } from "../../../core/sample/gen_plan.ts";
import { parseSamplePrompts } from "../../../core/train/train_samples.ts";
import type { FuzzTarget } from "../target.ts";
import { inputText, TEXT_BOUND_TEXT, textBound, textSeeds } from "./text_input.ts";

const GEN = `# prompts for gen_img
a photo of sks dog, masterpiece --n lowres, bad anatomy --w 512 --h 768 --d 1,2,3 --l 7.5 --s 28
(a cat:1.2) in a [hat] --nl 3 --am 0.5,1 --f cat.png --t 0.6

  a landscape --W 640 --H 384 --d -1 --c clip text --ow 1024 --ct 8
`;

const SAMPLES = `# sample prompts
masterpiece, 1girl --n low quality --w 512 --h 512 --d 1 --l 6.5 --s 20
a dog on the beach --w 768 --h 512
   # indented comment
a small house --d 4294967295 --s 2000
`;

const TOKENS = [
  " --n ",
  " --w 99999999999999999999",
  " --h 0",
  " --h 7",
  " --d 4294967296",
  " --d 1,2,,3",
  " --d -1",
  " --l 1.2.3",
  " --nl none",
  " --s 0",
  " --t 2",
  " --am 0.5,-1,1e5",
  " --f ../../etc/passwd",
  " --f a/b.png",
  " --f ",
  " --dsd1 3",
  " --glt 5",
  " --ow 1024",
  " --c x",
  " --zz 1",
  "{a|b}",
  "{2$$a|b|c}",
  "{",
  "a|",
  "{e$$",
  "$$",
  "<lora:x:0.5>",
  "BREAK",
  "# comment",
  "\t",
];

const PLAN = {
  width: 512,
  height: 512,
  steps: 20,
  scale: 7.5,
  negativeScale: null,
  strength: 0.8,
  imagesPerPrompt: 2,
  nIter: 1,
  batchSize: 2,
  seed: 1,
  iterSameSeed: false,
  networks: 2,
  initImageSizes: null,
  highresFix: false,
  warn: () => {},
};

export const target: FuzzTarget = {
  name: "prompt_file",
  what: "promptFileLines + planGeneration (gen_img --from_file) and parseSamplePrompts",
  boundText: TEXT_BOUND_TEXT,
  allocBound: textBound,
  seeds: () => textSeeds([GEN, SAMPLES]),
  text: { tokens: TOKENS, nesting: [["(", ")"], ["[", "]"], ["{", "|x}"], ["<lora:", ">"]] },
  run(input) {
    const text = inputText(input);
    for (const p of parseSamplePrompts(text)) {
      if (typeof p.prompt !== "string") throw new Error("sample prompt without text");
    }
    const lines = promptFileLines(text, "fuzz.txt");
    if (lines.length > 0) {
      const batches = planGeneration(lines, PLAN);
      for (const b of batches) {
        for (const j of b) {
          const { width, height } = j.settings;
          if (!(width > 0 && height > 0 && width % 8 === 0 && height % 8 === 0)) {
            throw new Error(`planned a ${width}x${height} image`);
          }
        }
      }
    }
    return Promise.resolve();
  },
};
