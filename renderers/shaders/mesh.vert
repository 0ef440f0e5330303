#version 330
uniform mat4 u_view;
uniform mat4 u_proj;
in vec3 in_pos;
in vec3 in_norm;
in vec4 in_color;
in vec2 in_uv;
out vec3 v_pos;
out vec3 v_norm;
out vec4 v_color;
out vec2 v_uv;
out float v_depth;
void main() {
    vec4 eye = u_view * vec4(in_pos, 1.0);
    v_pos = in_pos;
    v_norm = in_norm;
    v_color = in_color;
    v_uv = in_uv;
    v_depth = -eye.z;
    gl_Position = u_proj * eye;
}
