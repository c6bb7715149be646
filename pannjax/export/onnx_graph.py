"""`to_onnx`: an integer program as an ONNX graph, where ONNX has the operators to compute it exactly.

Expressible: programs whose arithmetic layers are all MAC-like (the "mac" and "sign_select" datapaths)
on operands of at most 8 bits, with 32-bit accumulators. Each such layer is an ONNX ``ConvInteger`` /
``MatMulInteger`` (int8 / uint8 operands, int32 accumulation; Open Neural Network Exchange, opset 17),
between transposes from and to the program's NHWC layout. Every ``requantize`` step is computed exactly
in int64: v = sign q M + B + 2^(k-1), y = (v - (v mod 2^k)) / 2^k (floor division by ``Mod`` with a positive
divisor), clipped -- the same integers as `pannjax.export.requant.multiply_round`. The ONNX QLinear
operators are not used: they requantise with a float multiplier and round the bias to one accumulator
unit, which changes codes at rounding boundaries. Max pooling (int32 has no ONNX MaxPool) runs on float64
copies, exact for int32 values.

Not expressible (`OnnxUnsupported`, its message one line for the export log): the shift, PANN additions
and XNOR datapaths (ONNX has no such operators), accumulators narrower than 32 bits (their wrap-around),
and activations wider than 8 bits.
"""

from __future__ import annotations

import numpy as np

from pannjax.export.program import Program

OPSET = 17
MAC_DATAPATHS = ("mac", "sign_select")


class OnnxUnsupported(Exception):
    """The program has a step ONNX cannot compute exactly (the message says which)."""


def unsupported_reason(program: Program) -> str | None:
    """Why `program` has no exact ONNX graph, or None."""
    for step in program.steps:
        if step["op"] != "layer":
            continue
        if step["datapath"] not in MAC_DATAPATHS:
            return (f"layer {step['path']} runs the {step['datapath']} datapath, which has no ONNX operator "
                    "(ONNX is written for MAC and sign-select layers only)")
        if step["acc_bits"] != 32:
            return (f"layer {step['path']} has a {step['acc_bits']}-bit accumulator, whose wrap-around ONNX "
                    "cannot express")
        if step["geometry"].get("x_abs", 256) > 255 or step["geometry"].get("w_abs", 256) > 127:
            return f"layer {step['path']} has operands wider than 8 bits (ONNX integer products take int8/uint8)"
    return None


def to_onnx(program: Program):
    """The `onnx.ModelProto` of `program`: input ``images`` (float32, NHWC, symbolic batch), outputs ``codes``
    (int32 logits) and ``logits`` (codes x output scale, float32). Raises `OnnxUnsupported`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    reason = unsupported_reason(program)
    if reason:
        raise OnnxUnsupported(reason)
    nodes, inits = [], []
    counter = [0]

    def fresh(stem: str) -> str:
        counter[0] += 1
        return f"{stem}_{counter[0]}"

    def const(value, dtype, stem="c", batch=False) -> str:
        a = np.asarray(value, dtype)
        if batch:
            a = a.reshape((1, *a.shape))
        name = fresh(stem)
        inits.append(numpy_helper.from_array(a, name))
        return name

    def node(op, inputs, stem, **attrs) -> str:
        out = fresh(stem)
        nodes.append(helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def cast(x, to) -> str:
        return node("Cast", [x], "cast", to=to)

    arrays = program.arrays
    env = {"input": "images"}
    signed_codes: dict[str, bool] = {}
    for step in program.steps:
        op, ins = step["op"], [env[n] for n in step["in"]]
        if op == "quantize":
            x = node("Div", [ins[0], const(step["step"], np.float32)], "scaled")
            x = node("Clip", [x, const(step["lo"], np.float32), const(step["hi"], np.float32)], "clipped")
            out = cast(node("Round", [x], "rounded"), TensorProto.INT32)
            signed_codes[step["out"]] = step["lo"] < 0
        elif op == "requantize":
            f = {k: np.asarray(arrays[step[k]]) for k in ("sign", "multiplier", "shift", "bias_hi", "bias_lo")}
            k = f["shift"].astype(np.int64)
            bias = f["bias_hi"].astype(np.int64) * 2**32 + f["bias_lo"].astype(np.int64)
            half = np.where(k > 0, np.left_shift(np.int64(1), np.maximum(k - 1, 0)), 0)
            signed_multiplier = f["sign"].astype(np.int64) * f["multiplier"].astype(np.int64)
            v = node("Mul", [cast(ins[0], TensorProto.INT64), const(signed_multiplier, np.int64, batch=True)],
                     "product")
            v = node("Add", [v, const(bias + half, np.int64, batch=True)], "biased")
            div = const(np.left_shift(np.int64(1), k), np.int64, batch=True)
            v = node("Div", [node("Sub", [v, node("Mod", [v, div], "rem", fmod=0)], "floor"), div], "shifted")
            v = node("Clip", [v, const(step["lo"], np.int64), const(step["hi"], np.int64)], "clipped")
            out = cast(v, TensorProto.INT32)
            signed_codes[step["out"]] = step["lo"] < 0
        elif op == "layer":
            x_type = TensorProto.INT8 if signed_codes.get(step["in"][0], True) else TensorProto.UINT8
            x = cast(ins[0], x_type)
            w = np.asarray(arrays[step["weights"]["w"]]).astype(np.int8)
            geo = step["geometry"]
            if geo["kind"] == "dense":
                out = node("MatMulInteger", [x, const(w, np.int8, "w")], "acc")
            else:
                (top, bottom), (left, right) = geo["padding"]
                xt = node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
                acc = node("ConvInteger", [xt, const(w.transpose(3, 2, 0, 1), np.int8, "w")], "acc",
                           strides=list(geo["strides"]), pads=[top, left, bottom, right], group=int(geo["groups"]))
                out = node("Transpose", [acc], "nhwc", perm=[0, 2, 3, 1])
        elif op == "relu":
            out = node("Max", [ins[0], const(0, np.int32)], "relu")
        elif op == "add":
            out = ins[0]
            for other in ins[1:]:
                out = node("Add", [out, other], "add")
        elif op == "sum":
            out = node("ReduceSum", [ins[0], const(step["axes"], np.int64)], "sum", keepdims=0)
        elif op == "max_pool":
            window, strides, padding = step["window"], step["strides"], step["padding"]
            (top, bottom), (left, right) = padding[1], padding[2]  # padded positions never win, as in the program
            xt = node("Transpose", [cast(ins[0], TensorProto.DOUBLE)], "nchw", perm=[0, 3, 1, 2])
            pooled = node("MaxPool", [xt], "pool", kernel_shape=list(window[1:3]), strides=list(strides[1:3]),
                          pads=[int(top), int(left), int(bottom), int(right)])
            out = cast(node("Transpose", [pooled], "nhwc", perm=[0, 2, 3, 1]), TensorProto.INT32)
        elif op == "slice":
            n = len(step["start"])
            out = node("Slice", [ins[0], const(step["start"][1:], np.int64), const(step["limit"][1:], np.int64),
                                 const(list(range(1, n)), np.int64), const(step["strides"][1:], np.int64)], "slice")
        elif op == "pad":
            cfg = step["config"]
            pads = [c[0] for c in cfg] + [c[1] for c in cfg]
            out = node("Pad", [ins[0], const(pads, np.int64), const(0, np.int32)], "pad")
        elif op == "concat":
            out = node("Concat", ins, "concat", axis=int(step["axis"]))
        elif op == "reshape":
            out = node("Reshape", [ins[0], const([-1 if i == 0 else d for i, d in enumerate(step["new_shape"])],
                                                 np.int64)], "reshape")
        elif op == "transpose":
            out = node("Transpose", ins, "transpose", perm=list(step["permutation"]))
        elif op == "output":
            nodes.append(helper.make_node("Identity", [ins[0]], ["codes"]))
            scale = const(np.asarray(arrays[step["scale"]], np.float32), np.float32, "scale", batch=True)
            nodes.append(helper.make_node("Mul", [cast(ins[0], TensorProto.FLOAT), scale], ["logits"]))
            continue
        else:
            raise OnnxUnsupported(f"program step {op!r} has no ONNX translation")
        env[step["out"]] = out
    out_shape = ["batch", *(f"d{i}" for i in range(np.ndim(arrays[program.output["scale"]])))]
    graph = helper.make_graph(
        nodes, "pannjax_integer_program",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", *program.input_shape])],
        [helper.make_tensor_value_info("codes", TensorProto.INT32, out_shape),
         helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pannjax")
    onnx.checker.check_model(model)
    return model

