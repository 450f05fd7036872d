"""Model zoo: `create_model(name, **kwargs)`, `list_models()`."""

from sepconv.models import dsc_resnet as _dsc_resnet  # noqa: F401  (registers)
from sepconv.models import mobilenet as _mobilenet  # noqa: F401
from sepconv.models import mobilenet_v2 as _mobilenet_v2  # noqa: F401
from sepconv.models import resnet9 as _resnet9  # noqa: F401
from sepconv.models import separable_resnet as _separable_resnet  # noqa: F401
from sepconv.models import vgg as _vgg  # noqa: F401
from sepconv.models._blocks import CONV_TYPES
from sepconv.models._registry import check_model_arguments, check_model_name, create_model, list_models, register_model
from sepconv.models.dsc_resnet import dsc_resnet
from sepconv.models.mobilenet import mobilenet_v1
from sepconv.models.mobilenet_v2 import mobilenet_v2
from sepconv.models.resnet9 import dsc_resnet9
from sepconv.models.separable_resnet import separable_resnet
from sepconv.models.vgg import vgg

__all__ = ["CONV_TYPES", "check_model_arguments", "check_model_name", "create_model", "dsc_resnet", "dsc_resnet9", "list_models", "mobilenet_v1", "mobilenet_v2", "register_model", "separable_resnet", "vgg"]
