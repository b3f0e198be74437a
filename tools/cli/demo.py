"""``t2i demo``: the local web demo (Gradio, an optional extra); the app is ``tools/demo.py``."""

from __future__ import annotations

from tools.cli.args import UsageError, add_checkpoint_argument, device_and_dtype, int_at_least


def register(sub) -> None:
    p = sub.add_parser("demo", help="a local web demo (Gradio): prompt in, judged images out",
                       description="Serve a Gradio app on HOST:PORT: a prompt, the mode (AR, hybrid, diffusion), "
                                   "sampler and guidance controls, seed and number of images; a gallery with the "
                                   "judge's verdict under each image (for prompts in the scene world's grammar) and "
                                   "the generation time. Needs the demo extra: pip install -e \".[demo]\".")
    add_checkpoint_argument(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int_at_least(1), default=7860, help="port (default: 7860)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> None:
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UsageError("t2i demo needs Gradio, which is an optional extra: pip install -e \".[demo]\"") from None
    from tools.demo import DemoBackend, build_demo

    device, dtype = device_and_dtype(args)
    backend = DemoBackend(args.checkpoint, device, dtype)
    demo = build_demo(backend)
    print(f"t2i demo: serving {args.checkpoint} on http://{args.host}:{args.port} (Ctrl+C stops it)", flush=True)
    demo.launch(server_name=args.host, server_port=args.port, show_error=True)
