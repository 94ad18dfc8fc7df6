from services.common.runtime import main
from services.feedback.server import build_spec

main(build_spec)
