"""De-stylisation preprocessors: StyleShot Contour, HED Soft Edges, Lineart (IMAGE -> IMAGE)."""

from functools import partial

from ..loaders.annotators import load_hed, load_lineart
from ..loaders.model_files import HED, LINEART_FINE
from ..preprocessors.hed import contour, soft_edges
from ..preprocessors.lineart import lineart
from . import host

CATEGORY = "style_suite/preprocessors"

RESOLUTION = (
    "INT",
    {
        "default": 0,
        "min": 0,
        "max": 16384,
        "step": 64,
        "tooltip": "Detect resolution. 0 runs at the image's own size (StyleShot's command-line demo and "
        "training data). Otherwise the short side is scaled to this and each side rounded to a multiple "
        "of 64 (512 is StyleShot's web demo); the map is resized back to the input size. CPU time grows "
        "with the square of the size.",
    },
)
IMAGE_INPUT = ("IMAGE", {"tooltip": "Images to process (RGB, grey or RGBA; RGBA is composited on white)."})


class Preprocessor:
    """What the three preprocessor nodes share: IMAGE in, one IMAGE out of the same size, through
    one network file. A node names its network input (MODEL_INPUT: input name, ModelFile, tooltip),
    adds its own inputs (SETTINGS), and loads its network and runs its detector in `detect`."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "detect"
    BINARY = False  # a binary map is resized back nearest-neighbour, so it stays binary
    SETTINGS = {}

    @classmethod
    def INPUT_TYPES(cls):
        name, expected, tooltip = cls.MODEL_INPUT
        return {
            "required": {
                "image": IMAGE_INPUT,
                name: host.model_input(expected, tooltip),
                **cls.SETTINGS,
                "resolution": RESOLUTION,
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, hed_model=None, lineart_model=None):
        # ComfyUI passes the network input this node has (the other stays None)
        return host.check_model_choice(cls.MODEL_INPUT[1], hed_model or lineart_model)

    def network(self, name, load):
        """The node's network from file `name`, ready to run. The node object keeps it, as ComfyUI's
        LoRA loader keeps its LoRA: ComfyUI holds a node's object while the graph has the node, so a
        new image does not read the file again, and drops it on /free."""
        self.loaded = host.load_network(self.MODEL_INPUT[1], name, load)
        return self.loaded.model

    def run(self, net, image, detect, resolution):
        """`detect` (images -> maps, on `net`) over every image, as the node's output."""
        return (host.run_preprocessor(net, image, detect, resolution, binary=self.BINARY),)


HED_INPUT = ("hed_model", HED, "HED network (ControlNetHED.pth).")


class StyleShotContour(Preprocessor):
    DESCRIPTION = (
        "StyleShot's 'Contour' content map: HED edges without the safe step, kept where strictly above the "
        "threshold, then dilated. White contours on black, same size as the input. It removes texture and "
        "brush strokes so only the layout reaches StyleShot's content encoder (sparse control)."
    )
    OUTPUT_TOOLTIPS = ("Binary contour map (white on black), one per input image.",)
    MODEL_INPUT, BINARY = HED_INPUT, True
    SETTINGS = {
        "threshold": (
            "INT",
            {
                "default": 200,
                "min": 0,
                "max": 255,
                "tooltip": "Edge levels (0-255) strictly "
                "above this are kept. StyleShot uses 200; lower keeps more detail.",
            },
        ),
        "dilate_size": (
            "INT",
            {
                "default": 3,
                "min": 1,
                "max": 15,
                "tooltip": "Side of the square dilation kernel, in pixels. StyleShot uses 3.",
            },
        ),
        "dilate_iterations": (
            "INT",
            {
                "default": 1,
                "min": 0,
                "max": 10,
                "tooltip": "How many times to dilate (0 = no dilation). StyleShot uses 1.",
            },
        ),
    }

    def detect(self, image, hed_model, threshold, dilate_size, dilate_iterations, resolution):
        net = self.network(hed_model, load_hed)
        detect = partial(
            contour, net, threshold=threshold, dilate_size=dilate_size, dilate_iterations=dilate_iterations
        )
        return self.run(net, image, detect, resolution)


class HEDSoftEdges(Preprocessor):
    DESCRIPTION = (
        "HED soft edge map (ControlNet 1.1 SoftEdge_HED), white edges on black, same size as the input. "
        "For soft-edge ControlNets; StyleShot's content encoder wants 'StyleShot Contour' instead."
    )
    OUTPUT_TOOLTIPS = ("Soft edge map (white on black), one per input image.",)
    MODEL_INPUT = HED_INPUT
    SETTINGS = {
        "safe": (
            "BOOLEAN",
            {
                "default": False,
                "tooltip": "ControlNet's 'safe' step: quantise to 3 levels, "
                "hiding the faint copy of the photo that soft maps carry.",
            },
        ),
    }

    def detect(self, image, hed_model, safe, resolution):
        net = self.network(hed_model, load_hed)
        return self.run(net, image, partial(soft_edges, net, safe=safe), resolution)


class Lineart(Preprocessor):
    DESCRIPTION = (
        "Line drawing from the informative-drawings generator, as StyleShot's 'Lineart' content map "
        "(detailed control). By default black lines on white, which is what StyleShot feeds its lineart "
        "model; switch 'invert' on for ControlNet lineart models (white lines on black)."
    )
    OUTPUT_TOOLTIPS = ("Line map, one per input image, same size as the input.",)
    MODEL_INPUT = (
        "lineart_model",
        LINEART_FINE,
        "sk_model.pth draws fine lines (StyleShot's default); sk_model2.pth coarse ones.",
    )
    SETTINGS = {
        "invert": (
            "BOOLEAN",
            {
                "default": False,
                "label_on": "white lines on black",
                "label_off": "black lines on white (StyleShot)",
                "tooltip": "Off: StyleShot's polarity (the generator's raw output). On: ControlNet's polarity.",
            },
        ),
    }

    def detect(self, image, lineart_model, invert, resolution):
        net = self.network(lineart_model, load_lineart)
        return self.run(net, image, partial(lineart, net, invert=invert), resolution)


NODE_CLASS_MAPPINGS = {
    "StyleSuiteStyleShotContour": StyleShotContour,
    "StyleSuiteHEDSoftEdges": HEDSoftEdges,
    "StyleSuiteLineart": Lineart,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "StyleSuiteStyleShotContour": "StyleShot Contour",
    "StyleSuiteHEDSoftEdges": "HED Soft Edges",
    "StyleSuiteLineart": "Lineart",
}
