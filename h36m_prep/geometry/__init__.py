"""Geometry shared by prep, loader and metrics: skeleton, cameras, virtual crop camera, Procrustes."""
from .camera import (CAMERA_IDS, FPS, MODELS, SUBJECTS, TEST_SUBJECTS, TRAIN_SUBJECTS, Camera,
                     camera_from_json, camera_to_world, default_calibration_path, distort,
                     load_calibration, pixel_rays, project, project_camera_frame,
                     quaternion_to_rotation, rotation_to_quaternion, save_calibration, undistort,
                     world_to_camera)
from .procrustes import procrustes
from .rig_calibration import CalibrationError, load_rig_calibration, save_rig_calibration
from .skeleton import (BONES, FLIP_PAIRS, FLIP_PERM, H36M17_FROM_32, H36M32_NAMES,
                       H36M32_PARENTS, JOINT_NAMES, NUM_JOINTS, PARENTS, ROOT, bone_lengths,
                       joints17, mirror_pose)
from .virtual import crop_focal, crop_intrinsics, crop_sampling_map, project_virtual, virtual_rotation
