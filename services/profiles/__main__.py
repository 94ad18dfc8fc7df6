from services.common.runtime import main
from services.profiles.server import build_spec

main(build_spec)
