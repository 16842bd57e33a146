/**
 * `train_network --config_file`: the TOML is read by `readConfigFile` (tables flattened, every key
 * a known flag of the flag's type) and, when it passes, through `parseTrainArgs` (merged with the
 * command line, which wins, and checked), with the file's text supplied from memory.
 *
 * @module
 */
import { parseTrainArgs, readConfigFile, TRAIN_FLAGS } from "../../../core/kohya/train_args.ts";
import type { FuzzTarget } from "../target.ts";
import { inputText, TEXT_BOUND_TEXT, textBound, textSeeds } from "./text_input.ts";

const KOHYA_STYLE = `[model_arguments]
pretrained_model_name_or_path = "models/sd15.safetensors"
v2 = false

[additional_network_arguments]
network_module = "networks.lora"
network_dim = 8
network_alpha = 4.0
network_args = ["conv_dim=4", "conv_alpha=1"]

[optimizer_arguments]
optimizer_type = "AdamW"
learning_rate = 1e-4
lr_scheduler = "cosine_with_restarts"
lr_warmup_steps = 10

[dataset_arguments]
resolution = "512,512"
train_batch_size = 2
caption_extension = ".txt"
shuffle_caption = true
keep_tokens = 1

[training_arguments]
output_dir = "out"
output_name = "my_lora"
save_precision = "fp16"
max_train_steps = 100
mixed_precision = "fp16"
seed = 42
noise_offset = 0.05
`;

const FLAT = `network_module = "networks.dylora"
network_dim = 16
learning_rate = 0.0002
max_train_epochs = 3
resolution = 768
sample_every_n_steps = -1
sample_prompts = "prompts.txt"
`;

/** A `name = value` line of the flag's type for every flag: the tokens the mutations splice. */
function flagTokens(): string[] {
  return TRAIN_FLAGS.flatMap((f) => {
    const v = f.type === "bool"
      ? "true"
      : f.type === "str"
      ? JSON.stringify(f.choices?.[0] ?? "x")
      : f.type === "int"
      ? "3"
      : "0.5";
    return [`${f.name} = ${f.nargs ? `[${v}]` : v}`];
  });
}

const ARGV = ["--config_file", "fuzz.toml"];

export const target: FuzzTarget = {
  name: "train_config",
  what: "parseTrainArgs with --config_file (the TOML read from memory) and the argument checks",
  boundText: TEXT_BOUND_TEXT,
  allocBound: textBound,
  seeds: () => textSeeds([KOHYA_STYLE, FLAT]),
  text: {
    tokens: [...flagTokens(), "[section]", "[a.b]", "[[arr]]", "x = { y = 1 }", "= 1", "k ="],
    nesting: [["[", "]"], ["{a=", "}"], ["x = [", "]\n"]],
  },
  async run(input) {
    const text = inputText(input);
    const read = () => Promise.resolve(text);
    // The file on its own first (cheap); the whole command line, merged and checked, only when the
    // file passes, since building the argument parser costs milliseconds.
    await readConfigFile("fuzz.toml", read);
    await parseTrainArgs(ARGV, { readText: read, onNote: () => {} });
  },
};
