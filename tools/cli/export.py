"""``t2i export transformers``: the decoder as a LlamaForCausalLM folder, optionally checked against ours."""

from __future__ import annotations

from pathlib import Path

from tools.cli.args import Parser, add_checkpoint_argument, print_json


def register(sub) -> None:
    export = sub.add_parser("export", help="export the decoder to another library",
                            description="Export the decoder of a pipeline for other engines.")
    export_sub = export.add_subparsers(dest="export_command", required=True, parser_class=Parser, metavar="TO")
    p = export_sub.add_parser("transformers", help="a LlamaForCausalLM folder that transformers loads as is",
                              description="Write config.json + model.safetensors (LlamaForCausalLM), "
                                          "generation_config.json, the caption tokenizer and t2i_layout.json (how "
                                          "to build the input ids) into OUT.")
    add_checkpoint_argument(p, device=False)  # a float32 file conversion; --verify runs on the CPU
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--verify", action="store_true",
                   help="load OUT with transformers and report the largest logit difference from ours and whether "
                        "greedy generate() gives our tokens, on 8 prompts")
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> None:
    from ar_model.export import export_llama
    from ar_model.pipeline import TextToImage

    pipe = TextToImage.from_pretrained(args.checkpoint)
    out = export_llama(pipe.decoder, args.out, caption_tokenizer_dir=args.checkpoint / "caption_tokenizer")
    report = {"export": str(out), "format": "transformers LlamaForCausalLM",
              "files": sorted(p.name for p in out.iterdir())}
    if args.verify:
        from ar_model.export import verify_export
        from ar_model.sequence import caption_prefixes
        from tools.bench_decode import PROMPTS

        prompts = caption_prefixes(pipe.decoder.config, [pipe.caption_tokenizer.encode(p) for p in PROMPTS])
        report["verify"] = verify_export(pipe.decoder, out, prompts)
    print_json(report)
